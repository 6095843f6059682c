"""Text-to-SQL scoring, Spider style: validity, exact match after normalisation, execution match on a seeded test
suite of random databases, and coarse error types.

Execution match follows the idea of *distilled test suites* (Zhong et al., 2020): a prediction counts as right when
it gives the gold query's result on every one of several random databases built from the schema, each seeded with
the gold query's literals so that its ``WHERE`` clauses select something. Rows are compared as multisets, in order
only when the gold query has a top-level ``ORDER BY``. Runaway queries are stopped after a budget of SQLite VM steps.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from .errors import InvalidParameter

DIALECT = "sqlite"
#: default budget of SQLite VM steps for one query before it is stopped (a Spider query on a test database needs
#: a few thousand)
TIMEOUT_OPS = 1_000_000
ERROR_TYPES = ("wrong table", "wrong column", "wrong literal", "wrong aggregate", "wrong join", "other")
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")
_FLOAT_DIGITS = 6


def _check_text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(f"{what} must be a SQL string, got {value!r}")
    return value


def parse_sql(text: str) -> exp.Expression | None:
    """The sqlglot AST of one SQLite statement, ``None`` when it does not parse."""
    _check_text("sql", text)
    try:
        return sqlglot.parse_one(text, read=DIALECT)
    except SqlglotError:
        return None


def is_valid(text: str) -> bool:
    """Whether ``text`` parses as one SQLite statement."""
    return parse_sql(text) is not None


def normalize(text: str) -> str | None:
    """Canonical spelling of ``text`` (lowercased identifiers, all quoted, canonical keywords and whitespace); ``None``
    when it does not parse."""
    tree = parse_sql(text)
    if tree is None:
        return None
    return normalize_identifiers(tree, dialect=DIALECT).sql(dialect=DIALECT, identify=True)


def _gold_tree(gold: str) -> exp.Expression:
    tree = parse_sql(gold)
    if tree is None:
        raise InvalidParameter(f"gold query {gold!r} does not parse as SQLite")
    return tree


def exact_match(pred: str, gold: str) -> bool:
    """Whether ``pred`` and ``gold`` are the same query after :func:`normalize`; an unparseable ``pred`` is False."""
    _gold_tree(gold)
    got = normalize(pred)
    return got is not None and got == normalize(gold)


# --- schemas ------------------------------------------------------------------------------------------------------


def _column_defs(create_statements: str) -> dict[str, list[tuple[str, str, bool]]]:
    """``{table: [(column, type, not_null_or_key)]}`` from CREATE TABLE statements."""
    _check_text("create_statements", create_statements)
    try:
        trees = sqlglot.parse(create_statements, read=DIALECT)
    except SqlglotError as exc:
        raise InvalidParameter(f"create_statements {create_statements!r} do not parse: {exc}") from None
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    for tree in trees:
        if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
            columns = [_column_def(c) for c in tree.this.expressions if isinstance(c, exp.ColumnDef | exp.Identifier)]
            tables[tree.this.this.name] = columns
    if not tables:
        raise InvalidParameter(f"create_statements {create_statements!r} hold no CREATE TABLE statement")
    return tables


def _column_def(column: exp.ColumnDef | exp.Identifier) -> tuple[str, str, bool]:
    if isinstance(column, exp.Identifier):  # a column without a type
        return column.name, "TEXT", False
    kind = column.args.get("kind")
    constraints = [c.args.get("kind") for c in column.args.get("constraints") or []]
    required = any(isinstance(c, exp.NotNullColumnConstraint | exp.PrimaryKeyColumnConstraint) for c in constraints)
    return column.name, kind.sql(dialect=DIALECT) if kind is not None else "TEXT", required


def schema_from_create(create_statements: str) -> dict[str, list[tuple[str, str]]]:
    """``{table: [(column, type)]}`` from CREATE TABLE statements (``type`` "TEXT" where none is given)."""
    return {t: [(name, kind) for name, kind, _ in cols] for t, cols in _column_defs(create_statements).items()}


def _category(sql_type: str) -> str:
    """``int``, ``real``, ``bool``, ``date`` or ``text``: the kind of random value a column of ``sql_type`` gets."""
    t = sql_type.upper()
    if "BOOL" in t:
        return "bool"
    if "INT" in t:
        return "int"
    if any(k in t for k in ("DATE", "TIME", "YEAR")):
        return "date"
    if any(k in t for k in ("REAL", "FLOA", "DOUB", "NUM", "DEC")):
        return "real"
    return "text"


# --- test suites --------------------------------------------------------------------------------------------------


def _literal_value(literal: exp.Literal) -> str | int | float:
    if literal.is_string:
        return literal.this
    number = float(literal.this)
    return int(number) if number.is_integer() else number


def _like_example(pattern: str) -> str:
    """A string that matches LIKE ``pattern``."""
    return pattern.replace("%", "").replace("_", "a")


def _literal_nodes(gold: exp.Expression, columns: set[str]):
    """The literals of ``gold``, with double-quoted names that are no column (SQLite reads them as strings)."""
    for node in gold.find_all(exp.Literal, exp.Column):
        if isinstance(node, exp.Literal):
            yield node, _literal_value(node)
        elif node.this.args.get("quoted") and not node.table and node.name.lower() not in columns:
            yield node, node.name


def _literals(gold: exp.Expression, columns: set[str]) -> list[tuple[str | int | float, str | None]]:
    """``(value, column compared with it or None)`` for each literal of ``gold`` (LIKE patterns as a match)."""
    found = []
    for literal, value in _literal_nodes(gold, columns):
        parent = literal.parent
        while isinstance(parent, exp.Neg | exp.Paren | exp.Tuple):
            parent = parent.parent
        if isinstance(parent, exp.Like | exp.ILike) and isinstance(value, str):
            value = _like_example(value)
        if isinstance(parent, exp.Limit | exp.Offset):
            continue
        others = parent.find_all(exp.Column) if isinstance(parent, exp.Predicate) else ()
        column = next((c for c in others if c is not literal), None)
        found.append((value, column.name.lower() if column is not None else None))
    return found


def _as_number(value: str) -> int | float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


def _fits(value: object, category: str) -> bool:
    if isinstance(value, str) and category in ("int", "real"):  # '1970' compared with a number column
        return _as_number(value) is not None
    if category in ("int", "real", "bool"):
        return isinstance(value, int | float) and not (category == "bool" and value not in (0, 1))
    return isinstance(value, str)


def _random_value(rng: random.Random, category: str, rows: int, numbers: list[int | float]):
    if category == "int":
        return rng.choice([*range(1, rows + 1), *numbers]) if numbers and rng.random() < 0.5 else rng.randint(1, rows)
    if category == "real":
        return rng.choice(numbers) if numbers and rng.random() < 0.3 else round(rng.uniform(0, 100), 2)
    if category == "bool":
        return rng.randint(0, 1)
    if category == "date":
        return f"20{rng.randint(0, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return rng.choice(_WORDS[: max(2, rows // 2)])


def _near(literals: list[tuple[object, str | None]]) -> list[int | float]:
    """The numeric literals and their neighbours (so that ``> 56`` and ``> 57`` select differently)."""
    numbers = [v for v, _ in literals if isinstance(v, int | float)]
    return sorted({n + d for n in numbers for d in (-1, 0, 1)})


def _fill(rng: random.Random, columns, rows: int, literals, odd: bool) -> list[list[object]]:
    """``rows`` random rows for ``columns``, with the literals placed in random rows of matching columns; ``odd``:
    with some NULLs in nullable columns and some duplicated rows."""
    numbers = _near(literals)
    data, seeded = [], []
    for _ in range(rows):
        row = []
        for _name, kind, required in columns:
            null = odd and not required and rng.random() < 0.1
            row.append(None if null else _random_value(rng, _category(kind), rows, numbers))
        data.append(row)
    for value, target in literals:
        slots = [i for i, (name, kind, _) in enumerate(columns) if _fits(value, _category(kind))]
        named = [i for i in slots if columns[i][0].lower() == target]
        for i in named or ([rng.choice(slots)] if slots and target is None else []):
            most = max(1, rows // (3 if isinstance(value, str) else 2))
            for j, r in enumerate(rng.sample(range(rows), k=rng.randint(min(2, most), most))):
                data[r][i] = _seed_value(rng, value, _category(columns[i][1]), j == 0)
                seeded.append(r)
    for r in rng.sample(range(rows), k=max(1, rows // 4)) if odd else ():  # duplicates, of seeded rows mostly
        data[r] = list(data[rng.choice(seeded or range(rows))])
    return data


def _seed_value(rng: random.Random, value, category: str, exact: bool):
    """``value`` as a value of a ``category`` column, or (numbers, unless ``exact``) a neighbour of it."""
    if category in ("int", "real") and isinstance(value, str):
        value = _as_number(value)
    if exact or isinstance(value, str):
        return value
    return value + rng.choice((-1, 0, 1))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _build(tables, gold: exp.Expression, rows: int, rng: random.Random, odd: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    literals = _literals(gold, {c.lower() for columns in tables.values() for c, _, _ in columns})
    for table, columns in tables.items():
        if table.lower().startswith("sqlite_"):  # SQLite's own tables (sqlite_sequence) cannot be created
            continue
        conn.execute(f"CREATE TABLE {_quote(table)} ({', '.join(f'{_quote(c)} {k}' for c, k, _ in columns)})")
        data = _fill(rng, columns, rows, literals, odd)
        marks = ", ".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {_quote(table)} VALUES ({marks})", data)
    conn.commit()
    conn.execute("PRAGMA query_only = ON")
    return conn


def test_suite(
    create_statements: str, gold_sql: str, *, n_databases: int = 8, rows: int = 12, seed: int = 0
) -> list[sqlite3.Connection]:
    """``n_databases`` seeded random in-memory databases for the schema, with the gold query's literals placed in
    matching columns (every other database has some NULLs in nullable columns and some duplicate rows); read-only."""
    if not isinstance(n_databases, int) or n_databases < 1:
        raise InvalidParameter(f"n_databases must be a positive integer, got {n_databases!r}")
    if not isinstance(rows, int) or rows < 1:
        raise InvalidParameter(f"rows must be a positive integer, got {rows!r}")
    tables = _column_defs(create_statements)
    gold = _gold_tree(gold_sql)
    rng = random.Random(seed)
    return [_build(tables, gold, max(1, rng.randint(rows // 2, rows)), rng, i % 2 == 1) for i in range(n_databases)]


test_suite.__test__ = False  # not a pytest test, despite the name


# --- execution ----------------------------------------------------------------------------------------------------


def _canon(value: object) -> object:
    return round(value, _FLOAT_DIGITS) if isinstance(value, float) else value


def _run(conn: sqlite3.Connection, sql: str, timeout_ops: int) -> list[tuple] | None:
    """The rows of ``sql`` on ``conn``, ``None`` when it fails or runs past ``timeout_ops`` VM steps."""
    conn.set_progress_handler(lambda: 1, timeout_ops)
    try:
        return [tuple(_canon(v) for v in row) for row in conn.execute(sql).fetchall()]
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError):
        return None
    finally:
        conn.set_progress_handler(None, 0)


def _ordered(gold: exp.Expression) -> bool:
    return gold.args.get("order") is not None


def execution_match(
    pred: str, gold: str, databases: list[sqlite3.Connection], *, timeout_ops: int = TIMEOUT_OPS
) -> bool:
    """Whether ``pred`` gives ``gold``'s rows on every database (in order only if ``gold`` has a top-level ORDER BY);
    a query that fails or runs past ``timeout_ops`` VM steps is a mismatch."""
    _check_text("pred", pred)
    ordered = _ordered(_gold_tree(gold))
    if not databases:
        raise InvalidParameter(f"databases must not be empty, got {databases!r}")
    if not isinstance(timeout_ops, int) or timeout_ops < 1:
        raise InvalidParameter(f"timeout_ops must be a positive integer, got {timeout_ops!r}")
    for conn in databases:
        want, got = _run(conn, gold, timeout_ops), _run(conn, pred, timeout_ops)
        if want is None or got is None:
            return False
        if (want != got) if ordered else (Counter(want) != Counter(got)):
            return False
    return True


def execution_accuracy_on(db_path: str | Path, pred: str, gold: str, *, timeout_ops: int = TIMEOUT_OPS) -> bool:
    """:func:`execution_match` on one real SQLite file (a Spider ``database/<db_id>/<db_id>.sqlite``), read-only."""
    path = Path(db_path)
    if not path.is_file():
        raise InvalidParameter(f"db_path {str(path)!r} is not a file")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return execution_match(pred, gold, [conn], timeout_ops=timeout_ops)
    finally:
        conn.close()


# --- error types --------------------------------------------------------------------------------------------------


def _parts(tree: exp.Expression) -> dict[str, object]:
    return {
        "wrong table": {t.name.lower() for t in tree.find_all(exp.Table)},
        "wrong column": {c.name.lower() for c in tree.find_all(exp.Column)},
        "wrong literal": {str(_literal_value(v)) for v in tree.find_all(exp.Literal)},
        "wrong aggregate": {a.key for a in tree.find_all(exp.AggFunc)},
        "wrong join": len(list(tree.find_all(exp.Join))),
    }


def error_types(pred: str, gold: str) -> list[str]:
    """What differs between ``pred`` and ``gold`` (names from :data:`ERROR_TYPES`); ``[]`` when they normalise the
    same, ``["other"]`` when ``pred`` does not parse or differs otherwise."""
    want = _gold_tree(gold)
    tree = parse_sql(pred)
    if tree is None:
        return ["other"]
    if normalize(pred) == normalize(gold):
        return []
    got, expected = _parts(tree), _parts(want)
    return [kind for kind in got if got[kind] != expected[kind]] or ["other"]


_SPIDER_TYPES = {"number": "INTEGER", "text": "TEXT", "time": "DATETIME", "boolean": "BOOLEAN", "others": "TEXT"}


def create_from_spider(table_entry: dict) -> str:
    """CREATE TABLE statements for one ``tables.json`` entry of Spider (its original table and column names)."""
    try:
        names, columns = table_entry["table_names_original"], table_entry["column_names_original"]
        types = table_entry["column_types"]
    except (KeyError, TypeError):
        raise InvalidParameter(f"table_entry {table_entry!r} is not a Spider tables.json entry") from None
    per_table: dict[int, list[str]] = {i: [] for i in range(len(names))}
    for (table, column), kind in zip(columns, types, strict=True):
        if table >= 0:
            per_table[table].append(f"{_quote(column)} {_SPIDER_TYPES.get(kind, 'TEXT')}")
    return "; ".join(f"CREATE TABLE {_quote(names[i])} ({', '.join(cols)})" for i, cols in per_table.items())
