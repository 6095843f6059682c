"""SQuAD 2.0: extractive question answering where a third or more of the questions have no answer in the
paragraph, so the model must answer from the context *or* abstain (Rajpurkar, Jia & Liang 2018). Not in the
study; the book adds it beside QASPER as the standard answerable/unanswerable benchmark (methods.md §B3).

Data sources:

* ``"hub"``: ``rajpurkar/squad_v2`` (pass ``revision=...``): hub train -> train; the hub validation set (the
  official dev set) is split by article into validation (25 %) and test (75 %).
* ``"local"``: official SQuAD 2.0 JSON. A folder (or a ``squad-v2.0`` folder below it, or its ``cs224n-split``)
  holding ``dev-v2.0.json`` and optionally ``train-v2.0.json``, or one file. Without a train file, the dev file's
  articles are split by a SHA-256 hash of the title into train / validation / test (50 / 12.5 / 37.5 % of the
  articles); with one, train is the train file and dev is split 25 / 75 into validation / test. The shared copy
  is the CS224N half of the official dev set (16 of 35 articles, 6,078 questions): scores on it are **not**
  comparable to published full-dev numbers.
* ``"offline"``: SYNTHETIC short papers about fictional methods (:mod:`labscale.data.fictional_papers`) with
  extractive and unanswerable questions only; an unanswerable question asks for a plausible fact about the
  paper's entities that the paragraph does not contain.

Scoring follows the official ``evaluate-v2.0.py``: answers normalised (lower case, no punctuation, no articles,
single spaces), exact match and token F1 as the maximum over the gold answers, and an unanswerable question
scores 1 only when the prediction is empty: here, when the model abstains ("Unanswerable").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from ..prompts import Shot
from .base import INVALID, Example, MalformedRows, Task, TaskData, file_sha256, reject_options, require_path
from .qasper import SYSTEM_MESSAGE, UNANSWERABLE, parse_answer

HUB_ID = "rajpurkar/squad_v2"
DEV_FILE, TRAIN_FILE = "dev-v2.0.json", "train-v2.0.json"
SPLIT_SALT = "labscale:squad-v2:v1"
#: shares of articles when only the dev file is present, and when the dev file only makes validation + test
DEV_ONLY_SHARES = (("train", 0.5), ("validation", 0.125), ("test", 0.375))
DEV_EVAL_SHARES = (("validation", 0.25), ("test", 0.75))

INSTRUCTION = (
    'Answer the Question with a short span copied from the Context. Answer "Unanswerable" when the '
    "Context does not contain the answer."
)
QUERY = "## Context:\n{context}\n\n## Question:\n{question}\n\n## Answer:"


def split_by_article(titles: Sequence[str], shares: Sequence[tuple[str, float]]) -> dict[str, str]:
    """Title -> split: titles ranked by SHA-256(salt + title) and cut at the cumulative ``shares`` (every question
    of an article lands in one split; the same titles always give the same split)."""
    ranked = sorted(set(titles), key=lambda t: hashlib.sha256(f"{SPLIT_SALT}:{t}".encode()).hexdigest())
    out, start = {}, 0
    for i, (split, share) in enumerate(shares):
        end = len(ranked) if i == len(shares) - 1 else start + round(share * len(ranked))
        out.update({t: split for t in ranked[start:end]})
        start = end
    return out


def squad_rows(payload: Mapping[str, Any], malformed: MalformedRows) -> list[dict[str, Any]]:
    """Question rows from an official SQuAD 2.0 JSON object (``{"data": [{title, paragraphs: [...]}]}``)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
        raise InvalidParameter("not an official SQuAD 2.0 JSON file (no top-level 'data' list)")
    rows = []
    for article in payload["data"]:
        for paragraph in article.get("paragraphs") or []:
            context = paragraph.get("context")
            for qa in paragraph.get("qas") or []:
                answers = [a["text"] for a in qa.get("answers") or [] if a.get("text")]
                impossible = bool(qa.get("is_impossible", not answers))
                if not context or not qa.get("question") or not qa.get("id") or (not impossible and not answers):
                    malformed.add("question without context, text, id or answer", qa)
                    continue
                rows.append(
                    {
                        "id": qa["id"],
                        "title": article.get("title", ""),
                        "context": context,
                        "question": qa["question"].strip(),
                        "answers": [] if impossible else answers,
                        "plausible": [a["text"] for a in qa.get("plausible_answers") or []],
                    }
                )
    return rows


def _find_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_file():
        return path, None
    for folder in (path, path / "squad-v2.0", path / "squad-v2.0" / "cs224n-split", path / "cs224n-split"):
        if (folder / DEV_FILE).is_file():
            train = folder / TRAIN_FILE
            return folder / DEV_FILE, train if train.is_file() else None
    raise InvalidParameter(
        f"no SQuAD 2.0 {DEV_FILE} in {str(path)!r} (nor in squad-v2.0/ or cs224n-split/ below "
        "it); pass data_path=<folder or file>"
    )


class SquadV2(Task):
    """SQuAD 2.0-style answerable / unanswerable extractive QA with the official scoring."""

    name = "squad_v2"
    title = "SQuAD 2.0 answerable and unanswerable questions"
    headline_metrics = ("f1", "NoAns_exact")
    max_new_tokens = 16
    system_message = SYSTEM_MESSAGE
    instruction = INSTRUCTION
    shot_style = "single"
    transition = "Here is the question that needs to be answered."

    @staticmethod
    def _examples(rows: Sequence[Mapping[str, Any]]) -> list[Example]:
        return [
            Example(
                id=r["id"],
                fields={"context": r["context"], "question": r["question"], "answers": list(r["answers"])},
                target=r["answers"][0] if r["answers"] else UNANSWERABLE,
                meta={
                    "kind": "answerable" if r["answers"] else "unanswerable",
                    "title": r.get("title"),
                    "plausible": list(r.get("plausible") or []),
                },
            )
            for r in rows
        ]

    def _load_offline(
        self, *, path=None, seed: int = 0, sizes: Mapping[str, int] | None = None, **options: Any
    ) -> TaskData:
        """SYNTHETIC extractive + unanswerable questions (half each; default 600 / 90 / 240)."""
        from ..data import fictional_papers

        reject_options(self.name, "offline", options)
        splits = fictional_papers.generate(seed=seed, sizes=sizes, weights={"extractive": 1, "none": 1})
        rows = {
            k: [
                {
                    "id": r["id"],
                    "title": r["paper_id"],
                    "context": r["document"],
                    "question": r["question"],
                    "answers": [] if r["answer_type"] == "none" else [r["answer"]],
                    "plausible": [r["plausible_answer"]] if r["plausible_answer"] else [],
                }
                for r in v
            ]
            for k, v in splits.items()
        }
        return TaskData(
            task=self.name,
            source="offline",
            origin=f"{fictional_papers.ORIGIN} (extractive and unanswerable questions), seed={seed}",
            splits={k: self._examples(v) for k, v in rows.items()},
            synthetic=True,
        )

    def _load_local(self, *, path=None, seed: int = 0, **options: Any) -> TaskData:
        """Official SQuAD 2.0 JSON, split by article (see the module docstring)."""
        reject_options(self.name, "local", options)
        dev, train = _find_files(require_path(path, "SQuAD 2.0"))
        malformed = MalformedRows()
        dev_rows = squad_rows(_read_json(dev), malformed)
        shares = DEV_EVAL_SHARES if train else DEV_ONLY_SHARES
        where = split_by_article([r["title"] for r in dev_rows], shares)
        splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
        for r in dev_rows:
            splits[where[r["title"]]].append(r)
        if train:
            splits["train"] = squad_rows(_read_json(train), malformed)
        cut = "/".join(f"{s} {share:g}" for s, share in shares)
        origin = (
            f"{dev}{' + ' + str(train) if train else ''} (official SQuAD 2.0 JSON; {dev.name} split by "
            f"article hash: {cut} of its articles)"
        )
        return TaskData(
            task=self.name,
            source="local",
            origin=origin,
            splits={k: self._examples(v) for k, v in splits.items()},
            malformed=malformed,
            content_hash=file_sha256([p for p in (dev, train) if p]),
        )

    def _load_hub(self, *, path=None, seed: int = 0, revision: str | None = None, **options: Any) -> TaskData:
        """``rajpurkar/squad_v2``: train -> train; validation split by article 25 / 75 into validation / test."""
        from ..data.hub import load_hub_dataset

        reject_options(self.name, "hub", options)
        dataset = load_hub_dataset(HUB_ID, revision)

        def rows(part) -> list[dict[str, Any]]:
            return [
                {
                    "id": r["id"],
                    "title": r["title"],
                    "context": r["context"],
                    "question": r["question"],
                    "answers": [a for a in r["answers"]["text"] if a],
                    "plausible": [],
                }
                for r in part
            ]

        dev_rows = rows(dataset["validation"])
        where = split_by_article([r["title"] for r in dev_rows], DEV_EVAL_SHARES)
        splits = {
            "train": rows(dataset["train"]) if "train" in dataset else [],
            "validation": [r for r in dev_rows if where[r["title"]] == "validation"],
            "test": [r for r in dev_rows if where[r["title"]] == "test"],
        }
        return TaskData(
            task=self.name,
            source="hub",
            origin=f"{HUB_ID} (validation split by article 25/75)",
            splits={k: self._examples(v) for k, v in splits.items()},
            revision=revision,
        )

    # -- prompts ----------------------------------------------------------------------------------------
    def format_input(self, example: Example) -> str:
        return QUERY.format(context=example.fields["context"], question=example.fields["question"])

    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """The first answerable, the first unanswerable and the second answerable train item."""
        train = data.splits.get("train") or []
        answerable = [e for e in train if e.fields["answers"]][:2]
        unanswerable = [e for e in train if not e.fields["answers"]][:1]
        chosen = answerable[:1] + unanswerable + answerable[1:2]
        return [Shot(self.format_input(ex), ex.target) for ex in chosen]

    # -- parsing and scoring ----------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        """As QASPER (:func:`~labscale.tasks.qasper.parse_answer`): "Unanswerable" anywhere is an abstention."""
        return parse_answer(text)

    @staticmethod
    def _prediction(parsed: str) -> str:
        return "" if parsed in (INVALID, UNANSWERABLE) else parsed

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per-item official (exact, f1), an invalid reply scoring 0 (for selective prediction)."""
        from ..metrics import squad_v2_item_scores

        scores = squad_v2_item_scores(
            [ex.fields["answers"] for ex in examples],
            [self._prediction(p) for p in parsed],
            [p == INVALID for p in parsed],
        )
        return {"exact": scores[:, 0].tolist(), "f1": scores[:, 1].tolist()}

    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """exact, f1, HasAns_exact/f1, NoAns_exact, abstention rate/recall/precision, invalid rate (95% CIs)."""
        from ..metrics import squad_v2_metrics

        if len(examples) != len(parsed):
            raise InvalidParameter(
                f"score needs one parsed reply per example: {len(examples)} examples, {len(parsed)} replies"
            )
        return squad_v2_metrics(
            [ex.fields["answers"] for ex in examples],
            [self._prediction(p) for p in parsed],
            abstained=[p == UNANSWERABLE for p in parsed],
            invalid=[p == INVALID for p in parsed],
            n_resamples=n_resamples,
            seed=seed,
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameter(f"{str(path)!r} is not a SQuAD 2.0 JSON file: {exc}") from exc
