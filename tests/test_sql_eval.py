"""Text-to-SQL scoring: validity, normalised exact match, execution match on seeded test suites, error types."""

from __future__ import annotations

import json
import time

import pytest

from labscale import sql_eval
from labscale.errors import InvalidParameter

HEAD = "CREATE TABLE head (head_id INTEGER NOT NULL, name VARCHAR NOT NULL, born_state VARCHAR, age INTEGER NOT NULL)"
GOLD = "SELECT name FROM head WHERE age > 56"
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture(scope="module")
def suite():
    return sql_eval.test_suite(HEAD, GOLD)


def test_parse_and_validity():
    assert sql_eval.parse_sql("SELECT name FROM head").key == "select"
    assert sql_eval.parse_sql("SELEC name FROM head") is None
    assert sql_eval.is_valid("SELECT count(*) FROM head WHERE age > 3")
    assert not sql_eval.is_valid("SELECT name FROM head WHERE")
    assert not sql_eval.is_valid("")
    with pytest.raises(InvalidParameter, match="None"):
        sql_eval.parse_sql(None)


def test_normalize_and_exact_match():
    assert sql_eval.normalize("select NAME  as N\nfrom Head;") == 'SELECT "name" AS "n" FROM "head"'
    assert sql_eval.exact_match(
        'SELECT name AS "n" FROM HEAD  WHERE age>56', "select Name as n from head where age > 56"
    )
    assert not sql_eval.exact_match("SELECT head.name FROM head WHERE 56 < age", GOLD)
    assert not sql_eval.exact_match("SELECT name FROM head WHERE age > 57", GOLD)
    assert not sql_eval.exact_match("SELEC name FROM head", GOLD)
    assert sql_eval.normalize("not sql at all (") is None
    with pytest.raises(InvalidParameter, match="gold query"):
        sql_eval.exact_match(GOLD, "SELECT FROM")


def test_schema_from_create():
    schema = sql_eval.schema_from_create("CREATE TABLE head (age INTEGER, name VARCHAR); CREATE TABLE t (x)")
    assert schema == {"head": [("age", "INTEGER"), ("name", "TEXT")], "t": [("x", "TEXT")]}
    for bad in ("SELECT 1", "CREATE TABLE (", 3):
        with pytest.raises(InvalidParameter, match="create_statements"):
            sql_eval.schema_from_create(bad)


def test_suite_is_seeded_and_holds_the_literals(suite):
    assert len(suite) == 8
    again = sql_eval.test_suite(HEAD, GOLD)
    rows = [db.execute("SELECT * FROM head").fetchall() for db in suite]
    assert rows == [db.execute("SELECT * FROM head").fetchall() for db in again]
    assert rows != [db.execute("SELECT * FROM head").fetchall() for db in sql_eval.test_suite(HEAD, GOLD, seed=1)]
    # every database has the literal and its neighbours selected, and NOT NULL columns never hold NULL
    assert all(db.execute("SELECT count(*) FROM head WHERE age = 56").fetchone()[0] > 0 for db in suite)
    assert all(db.execute("SELECT count(*) FROM head WHERE name IS NULL").fetchone()[0] == 0 for db in suite)
    with pytest.raises(InvalidParameter, match="n_databases"):
        sql_eval.test_suite(HEAD, GOLD, n_databases=0)


def test_suite_databases_are_read_only(suite):
    assert not sql_eval.execution_match("DELETE FROM head", GOLD, suite)
    assert suite[0].execute("SELECT count(*) FROM head").fetchone()[0] > 0


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("SELECT head.name FROM head WHERE 56 < age", GOLD),
        ("select NAME from HEAD as h where h.age >= 57", GOLD),
        ("SELECT count(name) FROM head", "SELECT count(*) FROM head"),
        ("SELECT name FROM head WHERE NOT age <= 56", GOLD),
        ("SELECT name FROM head WHERE age > 56 ORDER BY name DESC", GOLD),
        ("SELECT max(age) FROM head", "SELECT age FROM head ORDER BY age DESC LIMIT 1"),
    ],
)
def test_equivalent_rewrites_match(suite, pred, gold):
    assert sql_eval.execution_match(pred, gold, sql_eval.test_suite(HEAD, gold))


@pytest.mark.parametrize(
    "pred",
    [
        "SELECT born_state FROM head WHERE age > 56",  # wrong column
        "SELECT name FROM head WHERE age > 57",  # wrong literal: only the literal-seeded rows tell them apart
        "SELECT name FROM head WHERE age >= 56",  # wrong operator
        "SELECT DISTINCT name FROM head WHERE age > 56",  # duplicates dropped
        "SELECT name FROM head",
        "SELEC name FROM head",  # does not parse
        "SELECT nope FROM head",  # does not execute
    ],
)
def test_wrong_predictions_fail(suite, pred):
    assert not sql_eval.execution_match(pred, GOLD, suite)


def test_wrong_string_literal_fails():
    gold = "SELECT count(*) FROM head WHERE born_state = 'California'"
    dbs = sql_eval.test_suite(HEAD, gold)
    assert sql_eval.execution_match("SELECT count(head_id) FROM head WHERE 'California' = born_state", gold, dbs)
    assert not sql_eval.execution_match("SELECT count(*) FROM head WHERE born_state = 'Alabama'", gold, dbs)


def test_order_by_is_respected_only_when_gold_orders():
    ordered = "SELECT name, age FROM head ORDER BY age"
    dbs = sql_eval.test_suite(HEAD, ordered)
    assert sql_eval.execution_match("SELECT name, age FROM head ORDER BY age ASC", ordered, dbs)
    assert not sql_eval.execution_match("SELECT name, age FROM head ORDER BY age DESC", ordered, dbs)
    assert not sql_eval.execution_match("SELECT name, age FROM head", ordered, dbs)
    unordered = "SELECT name, age FROM head"
    assert sql_eval.execution_match("SELECT name, age FROM head ORDER BY age DESC", unordered, dbs)


def test_runaway_query_is_stopped(suite):
    start = time.perf_counter()
    assert not sql_eval.execution_match(RUNAWAY, "SELECT count(*) FROM head", suite)
    assert time.perf_counter() - start < 1.0
    assert sql_eval.execution_match("SELECT count(*) FROM head", "SELECT count(*) FROM head", suite)


def test_execution_accuracy_on_a_file(tmp_path):
    path = tmp_path / "db.sqlite"
    db = sql_eval.test_suite(HEAD, GOLD, n_databases=1)[0]
    target = __import__("sqlite3").connect(path)
    db.backup(target)
    target.close()
    assert sql_eval.execution_accuracy_on(path, "SELECT head.name FROM head WHERE 56 < age", GOLD)
    assert not sql_eval.execution_accuracy_on(path, "SELECT name FROM head WHERE age < 56", GOLD)
    with pytest.raises(InvalidParameter, match="missing.sqlite"):
        sql_eval.execution_accuracy_on(tmp_path / "missing.sqlite", GOLD, GOLD)


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        (GOLD, []),
        ("select NAME from head where age>56", []),
        ("SELECT name FROM people WHERE age > 56", ["wrong table"]),
        ("SELECT born_state FROM head WHERE age > 56", ["wrong column"]),
        ("SELECT name FROM head WHERE age > 60", ["wrong literal"]),
        ("SELECT name FROM head WHERE age < 56", ["other"]),
        ("SELECT name FROM head WHERE", ["other"]),
    ],
)
def test_error_types(pred, expected):
    assert sql_eval.error_types(pred, GOLD) == expected


def test_error_types_aggregate_and_join():
    gold = "SELECT max(age) FROM head AS h JOIN management AS m ON h.head_id = m.head_id"
    assert sql_eval.error_types(
        "SELECT min(age) FROM head AS h JOIN management AS m ON h.head_id = m.head_id", gold
    ) == ["wrong aggregate"]
    assert sql_eval.error_types(gold + " JOIN management AS m2 ON m.head_id = m2.head_id", gold) == ["wrong join"]


def test_spider_gold_queries_match_themselves():
    from labscale.data import registry

    folder = registry.locate("spider") / "evaluation_examples" / "examples"
    items = json.loads((folder / "dev.json").read_text())[::50][:20]
    tables = {t["db_id"]: t for t in json.loads((folder / "tables.json").read_text())}
    failures = []
    for item in items:
        create = sql_eval.create_from_spider(tables[item["db_id"]])
        dbs = sql_eval.test_suite(create, item["query"])
        if not sql_eval.execution_match(item["query"], item["query"], dbs):
            failures.append((item["db_id"], item["query"]))
    assert len(items) == 20
    assert len(failures) <= 2, failures
