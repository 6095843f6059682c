"""SQuAD 2.0 (Rajpurkar, Jia & Liang 2018) for the ``squad_v2`` task: the official JSON, the hub copy, synthetic papers.

* :func:`load_hub`: ``rajpurkar/squad_v2`` (pass ``revision=...``): hub train -> train; the hub validation set
  (the official dev set) is split by article into validation (25 %) and test (75 %).
* :func:`load_local`: official SQuAD 2.0 JSON. A folder (or a ``squad-v2.0`` folder below it, or its
  ``cs224n-split``) holding ``dev-v2.0.json`` and optionally ``train-v2.0.json``, or one file. Without a train
  file, the dev file's articles are split by a SHA-256 hash of the title into train / validation / test
  (50 / 12.5 / 37.5 % of the articles); with one, train is the train file and dev is split 25 / 75 into
  validation / test.
* :func:`load_offline`: SYNTHETIC short papers about fictional methods (:mod:`labscale.data.fictional_papers`)
  with extractive and unanswerable questions only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import DataUnavailable, InvalidParameter
from ..hashing import sha256_files
from . import fictional_papers
from .hub import load_hub_splits
from .qasper import UNANSWERABLE

TASK = "squad_v2"
HUB_ID = "rajpurkar/squad_v2"
DEV_FILE, TRAIN_FILE = "dev-v2.0.json", "train-v2.0.json"
SPLIT_SALT = "labscale:squad-v2:v1"
#: shares of articles when only the dev file is present, and when the dev file only makes validation + test
DEV_ONLY_SHARES = (("train", 0.5), ("validation", 0.125), ("test", 0.375))
DEV_EVAL_SHARES = (("validation", 0.25), ("test", 0.75))


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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameter(f"{str(path)!r} is not a SQuAD 2.0 JSON file: {exc}") from exc


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


def load_offline(path=None, *, seed: int = 0, sizes: Mapping[str, int] | None = None, **options: Any) -> TaskData:
    """SYNTHETIC extractive + unanswerable questions (half each; default 600 / 90 / 240)."""
    reject_options(TASK, "offline", options)
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
        task=TASK,
        source=Source.OFFLINE,
        origin=f"{fictional_papers.ORIGIN} (extractive and unanswerable questions), seed={seed}",
        splits={k: _examples(v) for k, v in rows.items()},
        synthetic=True,
    )


def load_local(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """Official SQuAD 2.0 JSON, split by article (see the module docstring)."""
    reject_options(TASK, "local", options)
    dev, train = _find_files(require_path(path, "SQuAD 2.0", "squad-v2.0"))
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
        task=TASK,
        source=Source.LOCAL,
        origin=origin,
        splits={k: _examples(v) for k, v in splits.items()},
        malformed=malformed,
        content_hash=sha256_files([p for p in (dev, train) if p]),
    )


def _hub_rows(split: str, part: Any) -> list[dict[str, Any]]:
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


def load_hub(path=None, *, seed: int = 0, revision: str | None = None, **options: Any) -> TaskData:
    """``rajpurkar/squad_v2``: train -> train; validation split by article 25 / 75 into validation / test."""
    reject_options(TASK, "hub", options)
    parts = load_hub_splits(HUB_ID, revision, _hub_rows, {"train": "train", "validation": "dev"})
    if "dev" not in parts:
        raise DataUnavailable(f"the Hugging Face dataset {HUB_ID!r} has no validation split (the official dev set)")
    where = split_by_article([r["title"] for r in parts["dev"]], DEV_EVAL_SHARES)
    splits = {
        "train": parts.get("train", []),
        "validation": [r for r in parts["dev"] if where[r["title"]] == "validation"],
        "test": [r for r in parts["dev"] if where[r["title"]] == "test"],
    }
    return TaskData(
        task=TASK,
        source=Source.HUB,
        origin=f"{HUB_ID} (validation split by article 25/75)",
        splits={k: _examples(v) for k, v in splits.items()},
        revision=revision,
    )
