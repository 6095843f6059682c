"""The companion study's structured tasks: Spider text-to-SQL and ViGGO (both directions), their data and scoring."""

from __future__ import annotations

import collections
import csv
import json
import shutil
import sqlite3

import pytest
from scipy import stats
from sqlglot import exp

import labscale.tasks
from labscale import sql_eval
from labscale.core import INVALID, Example
from labscale.data import spider
from labscale.errors import InvalidParameter
from labscale.tasks import get_task
from labscale.tasks.text_to_sql import INSTRUCTION, error_table, parse_query
from labscale.tasks.viggo import parse_representation, parse_sentence
from labscale.viggo_eval import parse_mr

SPIDER_EXAMPLES = ("evaluation_examples", "examples")
HEAD = "CREATE TABLE head (head_id INTEGER, name VARCHAR, born_state VARCHAR, age INTEGER)"
HEAD_GOLD = "SELECT name FROM head WHERE age > 56"
MR = (
    "give_opinion(name[SpellForce 3], rating[poor], genres[real-time strategy, role-playing], "
    "player_perspective[bird view])"
)
MR_REORDERED = (
    "give_opinion(rating[poor], name[SpellForce 3], genres[real-time strategy, role-playing], "
    "player_perspective[bird view])"
)
VIGGO_FILES = {"train": "train.csv", "validation": "valid.csv", "test": "test.csv"}
VIGGO_ROWS = {"train": 5103, "validation": 714, "test": 1083}
VIGGO_MRS = {"train": 1675, "validation": 238, "test": 359}


# -- helpers and fixtures ----------------------------------------------------------------------------------------
def _dev_rows(shared_data):
    return json.loads(shared_data.joinpath("spider", *SPIDER_EXAMPLES, "dev.json").read_text(encoding="utf-8"))


def _tables(shared_data):
    entries = json.loads(shared_data.joinpath("spider", *SPIDER_EXAMPLES, "tables.json").read_text(encoding="utf-8"))
    return {entry["db_id"]: entry for entry in entries}


def _csv_rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["mr"], row["ref"]) for row in csv.DictReader(handle)]


def _write_csv(path, rows, header=("mr", "ref")):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _item(question, context, target, **fields):
    return Example(id="x", fields={"question": question, "context": context, "db_id": "d", **fields}, target=target)


@pytest.fixture(scope="module")
def sql_task():
    return get_task("text_to_sql")


@pytest.fixture(scope="module")
def sql_data(sql_task, shared_data):
    return sql_task.load("local", path=shared_data)


@pytest.fixture(scope="module")
def viggo_data(shared_data):
    return get_task("viggo").load("local", path=shared_data)


@pytest.fixture(scope="module")
def nlg_data(shared_data):
    return get_task("viggo_nlg").load("local", path=shared_data)


def _by_question(data, question):
    return next(ex for split in data.splits.values() for ex in split if ex.fields["question"] == question)


# -- registry ------------------------------------------------------------------------------------------------------
def test_structured_task_names_and_get_task():
    assert labscale.tasks.STRUCTURED_TASK_NAMES == ("text_to_sql", "viggo", "viggo_nlg")
    for name in labscale.tasks.STRUCTURED_TASK_NAMES:
        task = get_task(name)
        assert task.name == name
        assert name in labscale.tasks.ALL_TASK_NAMES
        assert set(task.sources) == {"local", "hub"}


# -- Spider data ---------------------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_spider_split_partitions_dev_by_database(sql_data, shared_data):
    rows = _dev_rows(shared_data)
    assert len(rows) == 1034
    assert sql_data.malformed.count == 0
    sizes = {name: len(items) for name, items in sql_data.splits.items()}
    assert sizes == {"train": 563, "validation": 80, "test": 391}
    assert sum(sizes.values()) == len(rows)
    # independently: count dev.json questions per database and sum them by database_split
    per_db = collections.Counter(row["db_id"] for row in rows)
    assert len(per_db) == 20
    expected = collections.Counter()
    for db_id, n in per_db.items():
        expected[spider.database_split(db_id)] += n
    assert dict(expected) == sizes
    seen = {}
    for name, items in sql_data.splits.items():
        for ex in items:
            assert seen.setdefault(ex.fields["db_id"], name) == name, ex.fields["db_id"]
            assert spider.database_split(ex.fields["db_id"]) == name
    assert set(seen) == set(per_db)
    assert collections.Counter(ex.fields["db_id"] for items in sql_data.splits.values() for ex in items) == per_db
    # every item keeps its question and query (whitespace collapsed, no trailing semicolon)
    first = sql_data.splits["train"][0]
    assert first.meta["number"] == 0
    assert first.target == " ".join(rows[0]["query"].split()).rstrip(";").strip()


@pytest.mark.shared_data
def test_spider_create_context(sql_data, shared_data):
    entry = _tables(shared_data)["concert_singer"]
    ex = _by_question(sql_data, "How many singers do we have?")
    assert ex.fields["db_id"] == "concert_singer" and ex.target == "SELECT count(*) FROM singer"
    # no column named: the singer table's first primary key, typed from Spider's column types
    singer = entry["table_names_original"].index("singer")
    key = next(i for i in entry["primary_keys"] if entry["column_names_original"][i][0] == singer)
    name = entry["column_names_original"][key][1]
    kind = "INTEGER" if entry["column_types"][key] == "number" else "VARCHAR"
    assert ex.fields["context"] == f"CREATE TABLE singer ({name} {kind})" == "CREATE TABLE singer (Singer_ID INTEGER)"
    # a JOIN names both tables, only the columns the query names, INTEGER for number columns, VARCHAR otherwise
    join = next(
        e
        for e in sql_data.splits["train"]
        if e.target.startswith("SELECT T2.name , T2.capacity FROM concert AS T1 JOIN stadium AS T2")
    )
    assert join.fields["context"] == (
        "CREATE TABLE concert (Stadium_ID VARCHAR, Year VARCHAR); "
        "CREATE TABLE stadium (Stadium_ID INTEGER, Name VARCHAR, Capacity INTEGER)"
    )
    types = {
        (entry["table_names_original"][t], c): k
        for (t, c), k in zip(entry["column_names_original"], entry["column_types"], strict=True)
        if t >= 0
    }
    assert types[("concert", "Stadium_ID")] == "text" and types[("concert", "Year")] == "text"
    assert types[("stadium", "Capacity")] == "number" and types[("stadium", "Name")] == "text"
    # every create_context item: CREATE TABLE statements only, naming the tables of its gold query
    for e in sql_data.splits["test"][:50]:
        tables = {t.name.lower() for t in sql_eval.parse_sql(e.target).find_all(exp.Table)}
        statements = e.fields["context"].split("; ")
        assert all(s.startswith("CREATE TABLE ") for s in statements)
        assert {s.split()[2].strip('"').lower() for s in statements} == tables


@pytest.mark.shared_data
def test_spider_full_schema_lists_every_table(sql_task, shared_data):
    data = sql_task.load("local", path=shared_data, context="full_schema")
    tables = _tables(shared_data)
    assert sum(len(items) for items in data.splits.values()) == 1034
    for items in data.splits.values():
        ex = items[0]
        names = tables[ex.fields["db_id"]]["table_names_original"]
        assert ex.fields["context"].count("CREATE TABLE ") == len(names)
        assert ex.fields["context"] == sql_eval.create_from_spider(tables[ex.fields["db_id"]])
    with pytest.raises(InvalidParameter, match="create_context"):
        sql_task.load("local", path=shared_data, context="schema")


@pytest.mark.shared_data
def test_spider_malformed_rows_counted(sql_task, shared_data, tmp_path):
    folder = tmp_path.joinpath(*SPIDER_EXAMPLES)
    folder.mkdir(parents=True)
    shutil.copy(shared_data.joinpath("spider", *SPIDER_EXAMPLES, "tables.json"), folder / "tables.json")
    rows = _dev_rows(shared_data)
    del rows[0]["query"]
    rows[1]["db_id"] = "no_such_database"
    rows[2]["query"] = "SELEC x FRM"
    rows[3]["query"] = "SELECT count(*) FROM no_such_table"
    (folder / "dev.json").write_text(json.dumps(rows), encoding="utf-8")
    data = sql_task.load("local", path=tmp_path)
    assert data.malformed.count == 4
    assert dict(data.malformed.reasons) == {
        "unreadable row (KeyError)": 1,
        "database id without a schema in tables.json": 1,
        "gold query does not parse (sqlglot, sqlite)": 1,
        "gold query names a table its database does not have": 1,
    }
    assert data.malformed.example.startswith("unreadable row (KeyError)")
    assert sum(len(items) for items in data.splits.values()) == 1030
    # numbers still count rows of the file, dropped ones included
    assert min(ex.meta["number"] for items in data.splits.values() for ex in items) == 4


@pytest.mark.shared_data
def test_spider_database_dir(sql_task, shared_data, tmp_path):
    missing = tmp_path / "no_databases"
    with pytest.raises(InvalidParameter, match="no_databases"):
        sql_task.load("local", path=shared_data, database_dir=str(missing))
    data = sql_task.load("local", path=shared_data, database_dir=str(tmp_path))
    for items in data.splits.values():
        for ex in items:
            db_id = ex.fields["db_id"]
            assert ex.fields["db_path"] == str(tmp_path / db_id / f"{db_id}.sqlite")
            assert ex.fields["db_path"].endswith(f"{db_id}/{db_id}.sqlite")


def test_sources_and_options_are_checked(sql_task, tmp_path):
    for name in ("text_to_sql", "viggo", "viggo_nlg"):
        with pytest.raises(InvalidParameter, match="'local'"):
            get_task(name).load("offline")
    with pytest.raises(InvalidParameter, match="'foo'.*valid options: 'context', 'database_dir'"):
        sql_task.load("local", path=tmp_path, foo=1)
    with pytest.raises(InvalidParameter, match="'foo'.*valid options: none"):
        get_task("viggo").load("local", path=tmp_path, foo=1)
    # the data modules' offline loaders name the working sources too
    with pytest.raises(InvalidParameter, match="source='local'"):
        spider.load_offline()


@pytest.mark.shared_data
def test_execution_on_a_real_database(sql_task, shared_data, tmp_path):
    db = tmp_path / "concert_singer" / "concert_singer.sqlite"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT, Country TEXT, Age INTEGER)")
        conn.executemany(
            "INSERT INTO singer VALUES (?, ?, ?, ?)",
            [(1, "Joe Sharp", "Netherlands", 52), (2, "Timbaland", "United States", 32), (3, "Rose", "France", 41)],
        )
    conn.close()
    data = sql_task.load("local", path=shared_data, database_dir=tmp_path)
    split = spider.database_split("concert_singer")
    ex = next(e for e in data.splits[split] if e.fields["question"] == "How many singers do we have?")
    scores = sql_task.item_scores([ex, ex], [ex.target, "SELECT count(*) FROM singer WHERE Age > 100"])
    assert scores["execution_real"] == [1.0, 0.0]
    assert scores["valid"] == [1.0, 1.0]
    assert sql_task.score([ex], [ex.target])["execution_accuracy_real"]["value"] == 1.0


# -- ViGGO data ----------------------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_viggo_sizes_equal_the_csvs(viggo_data, nlg_data, shared_data):
    folder = shared_data / "viggo"
    rows = {split: _csv_rows(folder / name) for split, name in VIGGO_FILES.items()}
    assert {split: len(r) for split, r in rows.items()} == VIGGO_ROWS
    assert {split: len({mr for mr, _ in r}) for split, r in rows.items()} == VIGGO_MRS
    assert viggo_data.malformed.count == 0 and nlg_data.malformed.count == 0
    assert {split: len(items) for split, items in viggo_data.splits.items()} == VIGGO_ROWS
    assert {split: len(items) for split, items in nlg_data.splits.items()} == VIGGO_MRS
    first_mr, first_ref = rows["train"][0]
    assert viggo_data.splits["train"][0].target == first_mr
    assert viggo_data.splits["train"][0].fields["sentence"] == " ".join(first_ref.split())
    for split, items in nlg_data.splits.items():
        references = collections.defaultdict(list)
        for mr, ref in rows[split]:
            references[mr.strip()].append(" ".join(ref.split()))
        assert [ex.fields["mr"] for ex in items] == list(references)
        for ex in items:
            assert ex.fields["references"] == references[ex.fields["mr"]]
            assert ex.target == references[ex.fields["mr"]][0]
            assert ex.meta["function"] == ex.fields["mr"].split("(")[0]


@pytest.mark.shared_data
def test_viggo_malformed_rows(shared_data, tmp_path):
    folder = shared_data / "viggo"
    rows = {split: _csv_rows(folder / name)[:6] for split, name in VIGGO_FILES.items()}
    rows["train"] += [
        (rows["train"][0][0], ""),
        ("not_a_function(name[X])", "X is a game."),
        ("inform(name[X]", "X is a game."),
    ]
    for split, name in VIGGO_FILES.items():
        _write_csv(tmp_path / name, rows[split])
    for task in ("viggo", "viggo_nlg"):
        data = get_task(task).load("local", path=tmp_path)
        assert data.malformed.count == 3
        assert dict(data.malformed.reasons) == {
            "meaning representation or utterance missing": 1,
            "meaning representation does not parse into a ViGGO dialogue act": 2,
        }
    data = get_task("viggo").load("local", path=tmp_path)
    assert {split: len(items) for split, items in data.splits.items()} == {"train": 6, "validation": 6, "test": 6}


def test_viggo_wrong_columns(tmp_path):
    for name in VIGGO_FILES.values():
        _write_csv(tmp_path / name, [("inform(name[X])", "X.")], header=("meaning", "text"))
    with pytest.raises(InvalidParameter, match="columns.*meaning.*text.*mr, ref"):
        get_task("viggo").load("local", path=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameter, match="no ViGGO release"):
        get_task("viggo").load("local", path=tmp_path / "empty")


# -- text_to_sql parsing and scoring --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "query"),
    [
        ("SELECT name FROM head", "SELECT name FROM head"),
        ("SQL: SELECT name FROM head WHERE age > 3", "SELECT name FROM head WHERE age > 3"),
        ("### Output: SELECT count(*) FROM head", "SELECT count(*) FROM head"),
        ("Here is the query:\n```sql\nSELECT name\nFROM head\n```\nIt lists names.", "SELECT name FROM head"),
        ("SELECT name FROM head; SELECT age FROM head;", "SELECT name FROM head"),
        ("SELECT name FROM head WHERE name = 'a;b'; DROP TABLE head", "SELECT name FROM head WHERE name = 'a;b'"),
        ("SELECT name FROM head\n\nThis query returns every name.", "SELECT name FROM head"),
        (
            "WITH t AS (SELECT age FROM head) SELECT max(age) FROM t",
            "WITH t AS (SELECT age FROM head) SELECT max(age) FROM t",
        ),
    ],
)
def test_parse_query_accepts(reply, query):
    assert parse_query(reply) == query


@pytest.mark.parametrize(
    "reply",
    [
        "The query is SELECT name FROM head",
        "DROP TABLE head",
        "INSERT INTO head VALUES (1, 'a', 'b', 3)",
        "```sql\nDELETE FROM head\n```",
        "SELEC name FRM head",
        "SELECT name FROM head WHERE",
        "",
        None,
    ],
)
def test_parse_query_rejects(reply):
    assert parse_query(reply) == INVALID


@pytest.mark.shared_data
def test_text_to_sql_gold_replies_score_one(sql_task, sql_data):
    items = sql_data.splits["test"][:20]
    replies = [sql_task.parse(ex.target) for ex in items]
    assert replies == [ex.target for ex in items]
    scores = sql_task.score(items, replies)
    for metric in ("execution_accuracy", "exact_match", "valid_rate"):
        assert scores[metric]["value"] == 1.0 and scores[metric]["n"] == 20
    assert scores["invalid_rate"]["value"] == 0.0
    assert "execution_accuracy_real" not in scores


@pytest.mark.shared_data
def test_text_to_sql_rewrite_and_wrong_literal(sql_task, sql_data):
    ex = _by_question(sql_data, "How many singers do we have?")
    rewrite = sql_task.parse("select COUNT(*) from singer AS s")
    assert rewrite == "select COUNT(*) from singer AS s"
    scores = sql_task.item_scores([ex], [rewrite])
    assert scores["execution"] == [1.0]
    assert scores["exact"] == [float(sql_eval.exact_match(rewrite, ex.target))]
    head = _item("Names of heads older than 56?", HEAD, HEAD_GOLD)
    scores = sql_task.item_scores([head, head], [HEAD_GOLD, "SELECT name FROM head WHERE age > 57"])
    assert scores["execution"] == [1.0, 0.0]
    assert scores["exact"] == [1.0, 0.0]
    assert scores["valid"] == [1.0, 1.0]


def test_text_to_sql_invalid_replies_and_rate(sql_task):
    head = _item("Names of heads older than 56?", HEAD, HEAD_GOLD)
    replies = [sql_task.parse(r) for r in (HEAD_GOLD, "I cannot answer.", HEAD_GOLD, "DROP TABLE head", HEAD_GOLD)]
    assert replies.count(INVALID) == 2
    items = sql_task.item_scores([head] * 5, replies)
    assert items["invalid"] == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert items["execution"] == items["exact"] == items["valid"] == [1.0, 0.0, 1.0, 0.0, 1.0]
    scores = sql_task.score([head] * 5, replies)
    low, high = stats.binomtest(2, 5).proportion_ci(method="exact")
    assert scores["invalid_rate"]["value"] == pytest.approx(0.4)
    assert scores["invalid_rate"]["ci_low"] == pytest.approx(low)
    assert scores["invalid_rate"]["ci_high"] == pytest.approx(high)
    assert scores["execution_accuracy"]["value"] == pytest.approx(0.6)
    with pytest.raises(InvalidParameter, match="one parsed reply per example"):
        sql_task.score([head] * 5, replies[:4])


@pytest.mark.shared_data
def test_text_to_sql_fixed_shots_and_messages(sql_task, sql_data):
    shots = sql_task.shots(sql_data, 3)
    assert len(shots) == 3
    train = {sql_task.format_input(ex): ex.target for ex in sql_data.splits["train"]}
    for shot, shape in zip(shots, (exp.Where, exp.Join, exp.Group), strict=True):
        assert train[shot.user] == shot.assistant  # from train
        assert sql_eval.parse_sql(shot.assistant).find(shape) is not None
    assert len({shot.user for shot in shots}) == 3
    # the first train query with a WHERE clause, computed here
    first_where = next(ex for ex in sql_data.splits["train"] if " WHERE " in f" {ex.target.upper()} ")
    assert shots[0].assistant == first_where.target
    ex = sql_data.splits["test"][0]
    messages = sql_task.messages(ex, shots)
    assert len(messages) == 7
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert INSTRUCTION in messages[0]["content"]
    assert messages[0]["content"].startswith(INSTRUCTION)
    assert messages[-1]["content"].endswith(sql_task.format_input(ex))
    assert sql_task.format_input(ex).startswith(f"### Input:\n{ex.fields['question']}\n\n### Context:\n")


def test_text_to_sql_error_table(sql_task):
    head = _item("Names of heads older than 56?", HEAD, HEAD_GOLD)
    replies = [
        HEAD_GOLD,  # right: not counted
        "SELECT born_state FROM head WHERE age > 56",  # wrong column
        "SELECT name FROM head WHERE age > 57",  # wrong literal
        INVALID,
        INVALID,
    ]
    assert error_table([head] * 5, replies) == {"wrong column": 1, "wrong literal": 1, "invalid": 2}


# -- ViGGO parsing and scoring ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "mr"),
    [
        ("inform(name[X], rating[good])", "inform(name[X], rating[good])"),
        ("inform(name[X],  rating[good])\nThis is an inform act.", "inform(name[X],  rating[good])"),
        ("Meaning representation: request(specifier[fun])", "request(specifier[fun])"),
        ("```\nconfirm(name[X], has_multiplayer[yes])\n```", "confirm(name[X], has_multiplayer[yes])"),
    ],
)
def test_parse_representation_accepts(reply, mr):
    assert parse_representation(reply) == mr


@pytest.mark.parametrize(
    "reply",
    ["This sentence informs about a game.", "announce(name[X])", "inform(name[X]", "", None],
)
def test_parse_representation_rejects(reply):
    assert parse_representation(reply) == INVALID


@pytest.mark.shared_data
def test_viggo_gold_replies_score_one(viggo_data):
    task = get_task("viggo")
    items = viggo_data.splits["test"][:40]
    replies = [task.parse(ex.target) for ex in items]
    assert replies == [ex.target for ex in items]
    scores = task.score(items, replies, n_resamples=200)
    for metric in ("exact_match", "strict_exact_match", "function_accuracy", "slot_precision", "slot_recall"):
        assert scores[metric]["value"] == 1.0
    assert scores["slot_f1"]["value"] == 1.0
    assert scores["invalid_rate"]["value"] == 0.0


def test_viggo_reordered_and_missing_slots():
    task = get_task("viggo")
    ex = Example(id="x", fields={"sentence": "SpellForce 3 is poor."}, target=MR)
    missing = "give_opinion(name[SpellForce 3], rating[poor], genres[real-time strategy, role-playing])"
    scores = task.item_scores([ex] * 3, [MR_REORDERED, missing, INVALID])
    assert scores["exact"] == [1.0, 0.0, 0.0]
    assert scores["strict_exact"] == [0.0, 0.0, 0.0]
    assert scores["function_correct"] == [1.0, 1.0, 0.0]
    assert scores["invalid"] == [0.0, 0.0, 1.0]
    # gold pairs by hand: name, rating, two genres, player_perspective = 5; the second reply misses one
    assert scores["tp"] == [5.0, 4.0, 0.0]
    assert scores["fp"] == [0.0, 0.0, 0.0]
    assert scores["fn"] == [0.0, 1.0, 5.0]
    metrics = task.score([ex], [missing], n_resamples=50)
    assert metrics["slot_precision"]["value"] == 1.0
    assert metrics["slot_recall"]["value"] == pytest.approx(4 / 5)
    assert metrics["slot_f1"]["value"] == pytest.approx(2 * 1.0 * 0.8 / 1.8)


@pytest.mark.shared_data
def test_viggo_fixed_shots_have_three_functions(viggo_data, nlg_data):
    for name, data in (("viggo", viggo_data), ("viggo_nlg", nlg_data)):
        task = get_task(name)
        shots = task.shots(data, 3)
        functions = [(shot.assistant if name == "viggo" else shot.user.split("\n")[1]).split("(")[0] for shot in shots]
        assert len(set(functions)) == 3
        # the first train items of their dialogue acts
        expected = list(dict.fromkeys(ex.meta["function"] for ex in data.splits["train"]))[:3]
        assert functions == expected
        messages = task.messages(data.splits["test"][0], shots)
        assert len(messages) == 7 and messages[0]["content"].startswith(task.instruction)


def test_parse_sentence():
    assert parse_sentence('Sentence: "SpellForce 3 is a poor game."') == "SpellForce 3 is a poor game."
    assert parse_sentence("“I liked Dirt: Showdown.”\nMore text.") == "I liked Dirt: Showdown."
    assert parse_sentence("### Output: It is fun.") == "It is fun."
    assert parse_sentence("") == INVALID
    assert parse_sentence('  ""  ') == INVALID
    assert parse_sentence(None) == INVALID


@pytest.mark.shared_data
def test_viggo_nlg_scores(nlg_data):
    task = get_task("viggo_nlg")
    items = nlg_data.splits["test"][:5]
    assert parse_mr(items[0].fields["mr"]).known
    invalid = task.item_scores(items[:1], [task.parse("")])
    assert invalid["slot_error_rate"] == [1.0] and invalid["invalid"] == [1.0]
    if "rouge_l" in invalid:  # per-item ROUGE-L: an invalid reply scores 0
        assert invalid["rouge_l"] == [0.0]
    replies = [task.parse(ex.fields["references"][0]) for ex in items]
    scores = task.score(items, replies, n_resamples=50)
    assert scores["rouge_l"]["value"] == pytest.approx(1.0)
    assert scores["invalid_rate"]["value"] == 0.0
    scores = task.score(items[:2], [INVALID, replies[1]], n_resamples=50)
    assert scores["invalid_rate"]["value"] == 0.5
    assert scores["rouge_l"]["value"] <= 0.5 + 1e-9


# -- the companion study's intersection of sql-create-context with Spider (the hub source's logic, on real rows) ----


def _create_context_pool(dev_rows, tables, *, paraphrase: bool):
    """sql-create-context-style rows for Spider dev: its context, the query re-spaced and lower-cased, and (with
    ``paraphrase``) a question that is not Spider's, so that only the query can match."""
    pool = []
    for row in dev_rows:
        tree = sql_eval.parse_sql(row["query"])
        pool.append(
            {
                "question": ("Paraphrased: " if paraphrase else "") + row["question"],
                "context": spider.create_context(tables[row["db_id"]], tree),
                "answer": "  ".join(row["query"].lower().split()),
            }
        )
    return pool


def test_intersection_matches_every_dev_question_against_its_own_rows(shared_data):
    dev, tables = _dev_rows(shared_data), _tables(shared_data)
    splits, malformed = spider.intersect_with_spider(_create_context_pool(dev, tables, paraphrase=False), {"dev": dev})
    assert splits["train"] == [] and len(splits["test"]) == len(dev) == 1034 and malformed.count == 0
    first = splits["test"][0]
    # Spider's own query (spacing normalised, no semicolon) is kept, with the pool row's context
    assert first["query"] == " ".join(dev[0]["query"].split()).rstrip(";").strip()
    assert first["context"].startswith("CREATE TABLE") and first["db_id"] == dev[0]["db_id"]


def test_intersection_uses_each_pool_row_once_per_spider_split(shared_data):
    dev, tables = _dev_rows(shared_data), _tables(shared_data)
    distinct = {}
    for row in dev:  # one pool row per distinct query, with questions that never match
        distinct.setdefault(" ".join(row["query"].lower().split()).rstrip(";").strip(), row)
    pool = _create_context_pool(list(distinct.values()), tables, paraphrase=True)
    splits, _ = spider.intersect_with_spider(pool, {"train": dev, "validation": dev})
    # each distinct query is matched once in each split (a fresh pool per split, as the companion study ran it)
    assert len(splits["train"]) == len(splits["test"]) == len(distinct)
    assert len(distinct) < len(dev)  # Spider dev repeats queries for paraphrased questions
