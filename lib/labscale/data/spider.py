"""Spider text-to-SQL (Yu et al. 2018), the ``text_to_sql`` task: a question and the CREATE TABLE statements of its
database's tables in, one SQLite query out.

Sources:

* ``"local"``: the official release's ``evaluation_examples/examples/dev.json`` and ``tables.json`` (the registry's
  ``spider`` dataset: 1,034 questions over 20 databases; the training file and the SQLite databases are not in it).
  The **databases** are divided by a SHA-256 hash of their id into train / validation / test (about 60 / 20 / 20 %
  of the questions), so that no test database is seen in training, Spider's cross-database setting. This is **not**
  the companion study's split (it trained on Spider's train set), and scores are not comparable with Spider's
  leaderboard.
* ``"hub"``: ``b-mc2/sql-create-context`` (question, context, answer) **intersected with Spider** as the companion
  study built its data (:func:`hub_rows`): each Spider question (``xlangai/spider``) takes the first unused
  sql-create-context row with the same normalised query or question, whose context it keeps with Spider's own query.
  Spider train -> ``train`` (the companion matched 3,961 of 7,000), Spider dev -> ``test`` (568 of 1,034), no
  validation split.

The context (``context=`` option of the local source):

* ``"create_context"`` (default): as sql-create-context gives it, one ``CREATE TABLE`` per table the gold query
  names, listing only the columns the gold query names (the table's first primary key when it names none), typed
  INTEGER for Spider ``number`` columns and VARCHAR otherwise. This hints at the answer, as the companion study's data
  did; it is the easier setting.
* ``"full_schema"``: every table and column of the database (:func:`labscale.sql_eval.create_from_spider`), Spider's
  own setting; prompts are several times longer.

Rows dropped and counted in ``TaskData.malformed``: a question or query missing, a database id without a schema, a
gold query that does not parse (sqlglot, SQLite dialect), a gold query naming a table its database does not have.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlglot import exp

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter, check_choice
from ..hashing import sha256_files
from ..sql_eval import create_from_spider, parse_sql
from .hub import load_hub_splits

TASK = "text_to_sql"
DATASET = "spider"
HUB_ID = "b-mc2/sql-create-context"
SPIDER_HUB_ID = "xlangai/spider"
DEV_FILE = Path("evaluation_examples") / "examples" / "dev.json"
TABLES_FILE = Path("evaluation_examples") / "examples" / "tables.json"
CONTEXTS = ("create_context", "full_schema")
#: shares of the questions by database (test last takes the rest)
SPLIT_SHARES = (("train", 0.60), ("validation", 0.20), ("test", 0.20))
SALT = "labscale:spider:v1"
_SPACE = re.compile(r"\s+")


def normalize_question(text: str) -> str:
    """A question as the intersection compares it: whitespace collapsed, no trailing space, case kept."""
    return _SPACE.sub(" ", str(text)).strip()


def release_files(path: str | Path) -> tuple[Path, Path]:
    """``(dev.json, tables.json)`` under ``path`` (the release root, its ``evaluation_examples/examples`` folder or
    the shared data root holding ``spider/``)."""
    path = Path(path)
    for root in (path, path / DATASET):
        for dev, tables in ((root / DEV_FILE, root / TABLES_FILE), (root / "dev.json", root / "tables.json")):
            if dev.is_file() and tables.is_file():
                return dev, tables
    raise InvalidParameter(
        f"no Spider release (evaluation_examples/examples/dev.json and tables.json) under {str(path)!r}"
    )


def _table_columns(entry: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """``{table name (lower case): [(column, spider type), ...]}`` of one ``tables.json`` entry."""
    names = entry["table_names_original"]
    out: dict[str, list[tuple[str, str]]] = {name.lower(): [] for name in names}
    for (table, column), kind in zip(entry["column_names_original"], entry["column_types"], strict=True):
        if table >= 0:
            out[names[table].lower()].append((column, kind))
    return out


def create_context(entry: Mapping[str, Any], gold: exp.Expression) -> str | None:
    """sql-create-context's context for ``gold`` (see the module docstring); None when ``gold`` names a table the
    database does not have."""
    tables = _table_columns(entry)
    original = {name.lower(): name for name in entry["table_names_original"]}
    named_columns = {c.name.lower() for c in gold.find_all(exp.Column)}
    primary = {entry["column_names_original"][i][1] for i in entry.get("primary_keys", []) if isinstance(i, int)}
    statements = []
    for table in dict.fromkeys(t.name.lower() for t in gold.find_all(exp.Table)):
        if table not in tables:
            return None
        columns = [(c, k) for c, k in tables[table] if c.lower() in named_columns]
        if not columns:
            keys = [(c, k) for c, k in tables[table] if c in primary]
            columns = (keys or tables[table])[:1]
        typed = ", ".join(f"{_identifier(c)} {'INTEGER' if k == 'number' else 'VARCHAR'}" for c, k in columns)
        statements.append(f"CREATE TABLE {_identifier(original[table])} ({typed})")
    return "; ".join(statements)


def _query(text: str) -> str:
    """A gold query with whitespace collapsed and no trailing semicolon (as sql-create-context gives answers)."""
    return _SPACE.sub(" ", text).strip().rstrip(";").strip()


def _identifier(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _fraction(text: str) -> float:
    return int(hashlib.sha256(f"{SALT}:{text}".encode()).hexdigest()[:12], 16) / 16**12


def database_split(db_id: str) -> str:
    """The split of database ``db_id``, from a hash of its id (:data:`SPLIT_SHARES`)."""
    f, cumulative = _fraction(db_id), 0.0
    for name, share in SPLIT_SHARES:
        cumulative += share
        if f < cumulative:
            return name
    return SPLIT_SHARES[-1][0]


def _schemas(entries: Iterable[Any], malformed: MalformedRows) -> dict[str, Mapping[str, Any]]:
    schemas = {}
    for entry in entries:
        try:
            _table_columns(entry)
            schemas[entry["db_id"]] = entry
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            malformed.add(f"unreadable tables.json entry ({type(exc).__name__})", entry)
    return schemas


def spider_rows(
    rows: Iterable[Any], schemas: Mapping[str, Mapping[str, Any]], context: str, malformed: MalformedRows
) -> list[dict[str, Any]]:
    """Question/context/query rows from Spider ``dev.json``-style rows, malformed ones counted and dropped."""
    check_choice("Spider context", context, CONTEXTS)
    out = []
    for number, row in enumerate(rows):
        try:
            question, query = normalize_question(row["question"]), _query(row["query"])
            db_id = row["db_id"]
        except (KeyError, TypeError, AttributeError) as exc:
            malformed.add(f"unreadable row ({type(exc).__name__})", row)
            continue
        if not question or not query:
            malformed.add("question or query missing", row)
            continue
        if db_id not in schemas:
            malformed.add("database id without a schema in tables.json", row)
            continue
        tree = parse_sql(query)
        if tree is None:
            malformed.add("gold query does not parse (sqlglot, sqlite)", row)
            continue
        text = create_context(schemas[db_id], tree) if context == "create_context" else None
        if context == "create_context" and text is None:
            malformed.add("gold query names a table its database does not have", row)
            continue
        out.append(
            {
                "number": number,
                "question": question,
                "query": query,
                "db_id": db_id,
                "context": text if text is not None else create_from_spider(schemas[db_id]),
            }
        )
    return out


def load_release(
    path: str | Path, *, context: str = "create_context"
) -> tuple[dict[str, list[dict[str, Any]]], MalformedRows, list[Path]]:
    """Splits (by database) of the release's dev questions: ``(splits, malformed rows, files read)``."""
    dev, tables = release_files(path)
    malformed = MalformedRows()
    try:
        schemas = _schemas(json.loads(tables.read_text(encoding="utf-8")), malformed)
        rows = json.loads(dev.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"Spider file is not JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise InvalidParameter(f"{dev} holds a {type(rows).__name__}, not Spider's list of questions")
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in SPLIT_SHARES}
    for row in spider_rows(rows, schemas, context, malformed):
        splits[database_split(row["db_id"])].append(row)
    return splits, malformed, [dev, tables]


def database_folder(database_dir: str | Path | None) -> Path | None:
    """Spider's ``database/`` folder (``<db_id>/<db_id>.sqlite`` inside), checked; None when not given."""
    if database_dir is None:
        return None
    folder = Path(database_dir).expanduser()
    if not folder.is_dir():
        raise InvalidParameter(f"database_dir {str(folder)!r} is not a folder (Spider's database/ folder)")
    return folder


def _examples(split: str, rows: Sequence[Mapping[str, Any]], databases: Path | None = None) -> list[Example]:
    """Examples of one split; with ``databases``, each carries ``db_path``, its real Spider SQLite file."""
    examples = []
    for i, r in enumerate(rows):
        fields = {"question": r["question"], "context": r["context"], "db_id": r.get("db_id", "")}
        if databases is not None:
            fields["db_path"] = str(databases / fields["db_id"] / f"{fields['db_id']}.sqlite")
        examples.append(Example(id=f"{split}-{i:05d}", fields=fields, target=r["query"], meta={"number": r["number"]}))
    return examples


def load_offline(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """No generator: text-to-SQL needs real schemas and queries. Fails naming the sources that work."""
    raise InvalidParameter(
        f"task {TASK!r} has no offline generator; use source='local' (Spider dev through the data registry, "
        "available offline once fetched) or source='hub'"
    )


def load_local(
    path=None, *, seed: int = 0, context: str = "create_context", database_dir: str | None = None, **options: Any
) -> TaskData:
    """The Spider dev release, split by database (see the module docstring); ``database_dir``: Spider's
    ``database/`` folder, for execution on the real databases."""
    reject_options(TASK, "local", options, ("context", "database_dir"))
    check_choice("Spider context", context, CONTEXTS)
    databases = database_folder(database_dir)
    splits, malformed, files = load_release(require_path(path, "Spider", DATASET), context=context)
    return TaskData(
        task=TASK,
        source=Source.LOCAL,
        origin=(
            f"{files[0]} + {files[1].name} (Spider 1.0 dev, taoyds/spider; split by database 60/20/20, not the "
            f"companion study's split; context={context})"
        ),
        splits={name: _examples(name, rows, databases) for name, rows in splits.items()},
        malformed=malformed,
        content_hash=sha256_files(files) + f":{context}" + (f":{databases}" if databases else ""),
    )


def _query_key(text: str) -> str:
    """A query as the companion study matched them: lower case, whitespace collapsed, no trailing semicolon."""
    return _query(text).lower()


def intersect_with_spider(
    pool: Sequence[Mapping[str, Any]], spider: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[dict[str, list[dict[str, Any]]], MalformedRows]:
    """The companion study's intersection of sql-create-context rows (``pool``: question, context, answer) with
    Spider's splits (``spider``: split name -> rows with question, query, db_id). Within each Spider split, each
    question takes the first pool row not yet used *in that split* whose normalised query (lower case, whitespace
    collapsed) or question is its own, and keeps that row's context with its own Spider query. Spider ``train`` ->
    ``train``, any other split -> ``test``; unmatched questions are dropped, matched ones without a context or whose
    query does not parse are counted as malformed."""
    by_query: dict[str, list[int]] = {}
    by_question: dict[str, list[int]] = {}
    for i, row in enumerate(pool):
        by_query.setdefault(_query_key(str(row.get("answer") or "")), []).append(i)
        by_question.setdefault(normalize_question(row.get("question", "")), []).append(i)
    malformed = MalformedRows()
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for name, part in spider.items():
        used: set[int] = set()  # the companion matched each Spider split against a fresh copy of the pool
        for number, row in enumerate(part):
            question, query = normalize_question(row.get("question", "")), _query(str(row.get("query") or ""))
            candidates = by_query.get(query.lower(), []) + by_question.get(question, [])
            match = next((i for i in sorted(candidates) if i not in used), None)
            if match is None:
                continue
            used.add(match)
            context = str(pool[match].get("context") or "").strip()
            if not context or parse_sql(query) is None:
                malformed.add("context missing, or the Spider query does not parse", row)
                continue
            splits["train" if name == "train" else "test"].append(
                {"number": number, "question": question, "query": query, "context": context, "db_id": row["db_id"]}
            )
    return splits, malformed


def hub_rows(
    revision: str | None = None, *, dataset_id: str = HUB_ID, spider_id: str = SPIDER_HUB_ID
) -> tuple[dict[str, list[dict[str, Any]]], MalformedRows]:
    """``dataset_id`` (sql-create-context) intersected with ``spider_id``'s splits (:func:`intersect_with_spider`)."""
    pool = load_hub_splits(dataset_id, revision, lambda name, part: [dict(r) for r in part])
    spider = load_hub_splits(spider_id, None, lambda name, part: [dict(r) for r in part])
    return intersect_with_spider([row for part in pool.values() for row in part], spider)


def load_hub(
    path=None,
    *,
    seed: int = 0,
    revision: str | None = None,
    dataset_id: str | None = None,
    database_dir: str | None = None,
    **options: Any,
) -> TaskData:
    """``b-mc2/sql-create-context`` intersected with Spider (needs network or the datasets cache)."""
    reject_options(TASK, "hub", options, ("revision", "dataset_id", "database_dir"))
    databases = database_folder(database_dir)
    dataset = dataset_id or HUB_ID
    splits, malformed = hub_rows(revision, dataset_id=dataset)
    return TaskData(
        task=TASK,
        source=Source.HUB,
        origin=f"{dataset} intersected with {SPIDER_HUB_ID} as the companion did (train: Spider train; test: dev)",
        splits={name: _examples(name, rows, databases) for name, rows in splits.items()},
        malformed=malformed,
        revision=revision,
    )
