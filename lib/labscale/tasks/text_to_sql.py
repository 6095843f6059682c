"""Text-to-SQL on Spider with sql-create-context style contexts: the companion study's first structured task.

Data (:mod:`labscale.data.spider`): ``"local"`` is the Spider dev release split by database, ``"hub"`` is
``b-mc2/sql-create-context`` intersected with Spider as the companion study built it. The prompt is the companion
study's Code Llama prompt (samlhuillier/spider-sql-finetune), its instruction verbatim, the question under
``### Input:``, the CREATE TABLE context under ``### Context:`` and the query after ``### Response:``.

``database_dir=<Spider's database/ folder>`` (a task option of either source) adds each item's real SQLite file.

Scoring (:mod:`labscale.sql_eval`), per item and with a 95 % exact interval over items:

* ``valid``: the reply holds one SQLite query that sqlglot parses;
* ``exact``: the query equals the gold one after sqlglot normalisation;
* ``execution``: the query returns the gold query's rows on every database of a seeded test suite built from the
  item's CREATE TABLE statements (8 databases, gold literals planted); a query that fails or runs away is wrong;
* ``execution_real`` (only with the ``database_dir`` option): the same on the real
  Spider database of the item, as the companion study scored with test-suite-sql-eval.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from sqlglot import exp

from ..core import INVALID, Example, Source, TaskData
from ..data import spider
from ..errors import InvalidParameter
from ..prompts import Shot
from ..sql_eval import error_types, exact_match, execution_accuracy_on, execution_match, parse_sql, test_suite
from .base import Task

#: the companion study's instruction (its Code Llama training prompt), verbatim
INSTRUCTION = (
    "You are a powerful text-to-SQL model. Your job is to answer questions about a database. You are given a question "
    "and context regarding one or more tables.\n\nYou must output the SQL query that answers the question."
)
QUERY = "### Input:\n{question}\n\n### Context:\n{context}\n\n### Response:"
#: databases in each item's test suite, and their rows
SUITE_DATABASES, SUITE_ROWS = 8, 12
_FENCE = re.compile(r"```(?:sql|sqlite)?\s*\n?(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:###\s*)?(?:response|output|sql(?: query)?|query|answer)\s*:\s*", re.IGNORECASE)
_QUERY_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


def first_statement(text: str) -> str:
    """``text`` up to its first semicolon outside quotes (the whole text when there is none), stripped."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char == ";":
            return text[:i].strip()
    return text.strip()


def parse_query(text: str) -> str:
    """The SQL query a reply gives, or :data:`~labscale.core.INVALID`.

    Accepted: a reply that starts with the query (``SELECT``/``WITH``, after an optional "SQL:", "Output:" or
    "### Response:" label), else one whose first fenced code block holds it (prose before a ```` ```sql ```` fence is
    allowed). Whatever follows the first query (a repetition, an explanation) is ignored. The
    query ends at its first semicolon outside quotes, or at a blank line, or at a ``###`` header. It must parse as one
    SQLite query (sqlglot). Anything else (prose first, a non-query statement, SQL that does not parse) is INVALID."""
    if not isinstance(text, str):
        return INVALID
    body = _LABEL.sub("", text.strip(), count=1)
    if not _QUERY_START.match(body):  # not a query first: the first fenced block, if there is one
        fenced = _FENCE.search(text) if "```" in text else None
        body = _LABEL.sub("", fenced.group(1).strip(), count=1) if fenced else ""
        if not _QUERY_START.match(body):
            return INVALID
    body = re.split(r"\n\s*\n|\n\s*###", body, maxsplit=1)[0]
    query = " ".join(first_statement(body).split())
    tree = parse_sql(query)
    return query if isinstance(tree, exp.Query) else INVALID


class TextToSQL(Task):
    """Spider questions answered in SQLite from CREATE TABLE context (the companion study's prompt and data)."""

    name = "text_to_sql"
    title = "Text-to-SQL (Spider, sql-create-context contexts)"
    sources = (Source.LOCAL.value, Source.HUB.value)
    headline_metrics = ("execution_accuracy", "exact_match")
    #: the companion study generated up to 100 new tokens
    max_new_tokens = 100
    system_message = None
    instruction = INSTRUCTION
    shot_style = "chat"
    item_score_names = ("valid", "exact", "execution", "invalid")

    data_module = spider

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        return QUERY.format(question=example.fields["question"], context=example.fields["context"])

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The first train item whose query has a WHERE clause, the first with a JOIN and the first with a GROUP BY
        (each a different item), in that order: three shapes of query, the same for every test item."""
        train = data.splits.get("train") or []
        chosen: list[Example] = []
        for shape in (exp.Where, exp.Join, exp.Group):
            example = next(
                (ex for ex in train if ex not in chosen and (tree := parse_sql(ex.target)) and tree.find(shape)), None
            )
            if example is None:
                raise InvalidParameter(
                    f"the train split ({len(train)} items) has no query with a {shape.__name__.upper()} clause to use "
                    "as a fixed shot; load a larger train split"
                )
            chosen.append(example)
        return [Shot(self.format_input(ex), ex.target) for ex in chosen]

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        """:func:`parse_query`."""
        return parse_query(text)

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per item: ``valid``, ``exact``, ``execution`` (test suite), ``execution_real`` (with ``db_path``) and
        ``invalid``; an INVALID reply scores 0 everywhere."""
        self.check_replies(examples, parsed)
        out: dict[str, list[float]] = {name: [] for name in self.item_score_names}
        real = all("db_path" in ex.fields for ex in examples) and bool(examples)
        if real:
            out["execution_real"] = []
        for ex, pred in zip(examples, parsed, strict=True):
            ok = pred != INVALID
            out["valid"].append(float(ok))
            out["invalid"].append(float(not ok))
            out["exact"].append(float(ok and exact_match(pred, ex.target)))
            out["execution"].append(float(ok and execution_match(pred, ex.target, self.suite(ex))))
            if real:
                out["execution_real"].append(float(ok and execution_accuracy_on(ex.fields["db_path"], pred, ex.target)))
        return out

    @staticmethod
    def suite(example: Example):
        """The seeded test suite of ``example`` (seeded by a hash of its context and gold query: the same item always
        gets the same databases)."""
        key = f"{example.fields['context']}\n{example.target}".encode()
        seed = int(hashlib.sha256(key).hexdigest()[:12], 16)
        return test_suite(
            example.fields["context"], example.target, n_databases=SUITE_DATABASES, rows=SUITE_ROWS, seed=seed
        )

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Execution accuracy (test suite; and on the real databases when given), exact match, valid and invalid
        rates, each a proportion with its Clopper-Pearson interval."""
        from ..metrics import proportion_of

        scores = self.item_scores(examples, parsed)
        names = {
            "execution_accuracy": "execution",
            "exact_match": "exact",
            "valid_rate": "valid",
            "invalid_rate": "invalid",
            "execution_accuracy_real": "execution_real",
        }
        return {metric: proportion_of(scores[key]) for metric, key in names.items() if key in scores}


def error_table(examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, int]:
    """How many wrong (not execution-matching) queries show each error type (a query may show several);
    ``"invalid"`` counts replies without a query."""
    counts: dict[str, int] = {}
    for ex, pred in zip(examples, parsed, strict=True):
        if pred == INVALID:
            counts["invalid"] = counts.get("invalid", 0) + 1
            continue
        if execution_match(pred, ex.target, TextToSQL.suite(ex)):
            continue
        for kind in error_types(pred, ex.target):
            counts[kind] = counts.get(kind, 0) + 1
    return counts
