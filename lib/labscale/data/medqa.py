"""MedQA (Jin et al. 2021) reduced to true/false, the study's "MedQA-TF" privacy task (``medqa_tf``); offline,
synthetic patient records instead (:func:`load_offline`, :mod:`labscale.data.synthetic_patients`).

The study used ``lurosenb/medqa`` and reduced MedQA's four-option questions to a binary task; its derivation code
was not released. Here the reduction is explicit and seeded: **each question is paired with either its correct
option (label ``True``) or one of its incorrect options (``False``)**, half and half by a hash of the question, so
every question appears once and labels are balanced.

* :func:`load_release` reads an original release file (``US/4_options/phrases_no_exclude_{split}.jsonl``: fields
  ``question``, ``options`` {A..D}, ``answer_idx``). Only the **test** file (1,273 questions) is available offline; it
  is divided by a hash of the question text into train / validation / test (60 / 20 / 20 %), which is **not** the
  study's split.
* :func:`load_hub` reads a hub copy: rows in the release schema (``question``/``options``/``answer_idx``) or the
  study's ``input``/``output`` prompt pairs (the question with its options, and the correct answer text; the
  false item then pairs the question with another option listed in the input, when one can be found).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter
from ..hashing import sha256_files
from . import synthetic_patients
from .hub import load_hub_splits

TASK = "medqa_tf"
HUB_ID = "lurosenb/medqa"
RELEASE_SUBPATH = Path("US") / "4_options"
SPLIT_SHARES = (("train", 0.60), ("validation", 0.20), ("test", 0.20))
SALT = "labscale:medqa-tf:v1"
OPTION_KEYS = ("A", "B", "C", "D")


def _fraction(text: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def true_false_item(item_id: str, question: str, correct: str, wrong: list[str], seed: int) -> dict[str, Any]:
    """One true/false row: the question with its correct option or (half of the time) one incorrect option."""
    coin = _fraction(question, f"{SALT}:{seed}")
    if coin < 0.5 or not wrong:
        return {
            "id": item_id,
            "record": "",
            "question": question,
            "option": correct,
            "label": "True",
            "meta": {"kind": "correct_option"},
        }
    pick = wrong[int(coin * 1e6) % len(wrong)]
    return {
        "id": item_id,
        "record": "",
        "question": question,
        "option": pick,
        "label": "False",
        "meta": {"kind": "incorrect_option"},
    }


def release_files(path: str | Path) -> list[Path]:
    """The release jsonl files under ``path`` (a file, its folder, or the shared data root holding ``medqa/``)."""
    path = Path(path)
    if path.is_file():
        return [path]
    for folder in (path, path / RELEASE_SUBPATH, path / "medqa" / RELEASE_SUBPATH):
        found = sorted(folder.glob("phrases_no_exclude_*.jsonl")) if folder.is_dir() else []
        if found:
            return found
    raise InvalidParameter(f"no MedQA release file (US/4_options/phrases_no_exclude_*.jsonl) under {str(path)!r}")


def _rows_from_release(lines: Iterable[str], malformed: MalformedRows) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            options = row["options"]
            correct = options[row["answer_idx"]]
            question = row["question"].strip()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            malformed.add(f"unreadable row ({type(exc).__name__})", line)
            continue
        if not question or not isinstance(options, dict) or len(options) < 2:
            malformed.add("question or options missing", row)
            continue
        rows.append(
            {
                "number": number,
                "question": question,
                "correct": correct,
                "wrong": [v for k, v in sorted(options.items()) if k != row["answer_idx"]],
            }
        )
    return rows


def load_release(path: str | Path, seed: int = 0) -> tuple[dict[str, list[dict[str, Any]]], MalformedRows, list[Path]]:
    """True/false splits from the release files: ``(splits, malformed rows, files read)``. A file named ``*_train``,
    ``*_dev`` or ``*_test`` keeps its split when several are present; a lone file is divided by question hash."""
    files = release_files(path)
    malformed = MalformedRows()
    named = {"train": "train", "dev": "validation", "test": "test"}
    by_split: dict[str, list[dict[str, Any]]] = {}
    for file in files:
        part = file.stem.rsplit("_", 1)[-1]
        rows = _rows_from_release(file.read_text(encoding="utf-8").splitlines(), malformed)
        by_split.setdefault(named.get(part, part), []).extend(rows)
    if len(by_split) == 1:  # one file: split it by question hash
        rows = next(iter(by_split.values()))
        by_split = {name: [] for name, _ in SPLIT_SHARES}
        for row in rows:
            f, cumulative = _fraction(row["question"], SALT), 0.0
            for name, share in SPLIT_SHARES:
                cumulative += share
                if f < cumulative or name == SPLIT_SHARES[-1][0]:
                    by_split[name].append(row)
                    break
    splits = {
        name: [
            true_false_item(f"{name}-{i:05d}", r["question"], r["correct"], r["wrong"], seed)
            for i, r in enumerate(rows)
        ]
        for name, rows in by_split.items()
    }
    return splits, malformed, files


_BRACKETS = re.compile(r"\[([^\[\]]+)\]")


def hub_rows(revision: str | None = None, *, dataset_id: str = HUB_ID, seed: int = 0) -> dict[str, list[dict]]:
    """True/false splits from a hub copy of MedQA (see the module docstring for the two schemas read); every split
    the dataset has, dev/valid named validation."""

    def convert(name: str, part: Any) -> list[dict[str, Any]]:
        rows = []
        for i, row in enumerate(part):
            if "options" in row and "answer_idx" in row:
                options = (
                    row["options"]
                    if isinstance(row["options"], Mapping)
                    else {o["key"]: o["value"] for o in row["options"]}
                )
                correct, question = options[row["answer_idx"]], row["question"]
                wrong = [v for k, v in sorted(options.items()) if k != row["answer_idx"]]
            elif "input" in row and "output" in row:
                question, correct = str(row["input"]).strip(), str(row["output"]).strip()
                listed = _BRACKETS.findall(question)
                candidates = [c.strip() for c in (listed[-1].split(",") if listed else [])]
                wrong = [c for c in candidates if c and c != correct]
            else:
                raise InvalidParameter(
                    f"{dataset_id} rows have columns {sorted(row)}; expected question/options/"
                    "answer_idx or input/output"
                )
            rows.append(true_false_item(f"{name}-{i:05d}", question, correct, wrong, seed))
        return rows

    return load_hub_splits(dataset_id, revision, convert)


# -- the task's three sources ----------------------------------------------------------------------------------
def _examples(rows: Sequence[Mapping[str, Any]]) -> list[Example]:
    return [
        Example(
            id=r["id"],
            fields={"record": r["record"], "question": r["question"], "option": r["option"]},
            target=r["label"],
            meta=dict(r.get("meta") or {}),
        )
        for r in rows
    ]


def load_offline(path=None, *, seed: int = 0, sizes: Mapping[str, int] | None = None, **options: Any) -> TaskData:
    """SYNTHETIC patient records (default 400 / 100 / 100 items, labels balanced)."""
    reject_options(TASK, "offline", options)
    splits = synthetic_patients.generate(seed=seed, sizes=sizes)
    return TaskData(
        task=TASK,
        source=Source.OFFLINE,
        origin=f"{synthetic_patients.ORIGIN}, seed={seed}",
        splits={k: _examples(v) for k, v in splits.items()},
        synthetic=True,
    )


def load_local(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """The MedQA release file(s), reduced to true/false (see the module docstring)."""
    reject_options(TASK, "local", options)
    splits, malformed, files = load_release(require_path(path, "MedQA", "medqa"), seed=seed)
    origin = (
        f"{', '.join(str(f) for f in files)} (MedQA US 4-option release, jind11/MedQA; true/false "
        f"reduction seed={seed}"
        + ("; one file split 60/20/20 by question hash, not the study's split)" if len(files) == 1 else ")")
    )
    return TaskData(
        task=TASK,
        source=Source.LOCAL,
        origin=origin,
        splits={k: _examples(v) for k, v in splits.items()},
        malformed=malformed,
        content_hash=sha256_files(files) + f":tf-seed-{seed}",
    )


def load_hub(
    path=None, *, seed: int = 0, revision: str | None = None, dataset_id: str | None = None, **options: Any
) -> TaskData:
    """The study's ``lurosenb/medqa`` (or ``dataset_id=...``; needs network or the datasets cache)."""
    reject_options(TASK, "hub", options)
    dataset = dataset_id or HUB_ID
    return TaskData(
        task=TASK,
        source=Source.HUB,
        origin=f"{dataset} (true/false reduction seed={seed})",
        splits={k: _examples(v) for k, v in hub_rows(revision, dataset_id=dataset, seed=seed).items()},
        revision=revision,
    )
