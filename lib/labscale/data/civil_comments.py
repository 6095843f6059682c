"""CivilComments for the ``toxicity`` task: the study's hub sample, the CivilComments-WILDS release, synthetic comments.

* :func:`load_hub`: ``yanyiwei/civil-comments-sampled`` (800 / 100 / 200; columns ``text``, ``label`` -- a string,
  toxic iff it contains "Y", the study's rule -- and identity scores ``male``, ``female``); ``revision`` pins it.
* :func:`load_local`: the CivilComments-WILDS release file ``all_data_with_identities.csv`` (columns
  ``comment_text``, ``toxicity`` (toxic iff >= 0.5), ``male``, ``female``, ``split`` in train/val/test), filtered
  to comments with a male or female score >= 0.5. Option ``sample`` (default 800 / 100 / 200) draws a seeded
  sample balanced over the four cells, as the study's subset was; ``sample=None`` keeps every filtered comment.
  This is **not** the study's subset, whose item ids are not published.
* :func:`load_offline`: SYNTHETIC comments (:mod:`labscale.data.synthetic_comments`), option ``sizes``.

Every example's target is ``yes`` (toxic) or ``no``; its ``meta`` holds the ``male`` / ``female`` identity scores
and its cell (``meta["kind"]``, :func:`cell_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import SPLITS, Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter, check_range
from . import synthetic_comments
from .hub import load_hub_splits

TASK = "toxicity"
HUB_DATASET = "yanyiwei/civil-comments-sampled"
LOCAL_FILE = "all_data_with_identities.csv"

TOXIC, NONTOXIC = "yes", "no"
GENDERS = ("male", "female")
#: the study's four (gender x label) cells
CELLS = ("male_toxic", "male_nontoxic", "female_toxic", "female_nontoxic")
#: identity score at or above which a comment belongs to a gender group (the study's threshold)
IDENTITY_THRESHOLD = 0.5
DEFAULT_SAMPLE = {"train": 800, "validation": 100, "test": 200}

_OPTIONS = {"offline": ("sizes",), "local": ("sample",), "hub": ("revision",)}


def cell_of(gender_scores: Mapping[str, float], toxic: bool) -> str:
    """``meta["kind"]`` of a comment: its cell ("female_toxic"), "male+female_toxic" when both genders reach the
    threshold, "unidentified_toxic" when neither does."""
    genders = [g for g in GENDERS if (gender_scores.get(g) or 0.0) >= IDENTITY_THRESHOLD]
    who = "+".join(genders) if genders else "unidentified"
    return f"{who}_{'toxic' if toxic else 'nontoxic'}"


def _score_value(value: Any) -> float | None:
    """An identity score as a float in [0, 1]; None if unreadable. A missing (NaN) score means not annotated: 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:
        return 0.0
    return number if 0.0 <= number <= 1.0 else None


def _example(id_: str, text: str, toxic: bool, male: float, female: float, **meta: Any) -> Example:
    scores = {"male": male, "female": female}
    return Example(
        id=id_,
        fields={"text": text},
        target=TOXIC if toxic else NONTOXIC,
        meta={**meta, **scores, "kind": cell_of(scores, toxic)},
    )


def balanced_sample(examples: Sequence[Example], size: int, seed: int, what: str) -> list[Example]:
    """A seeded sample of ``size`` examples with the four cells as equal as possible (dataset order kept).
    Comments in both gender groups count in the male cell here, so a cell is never sampled twice."""
    import random

    by_cell: dict[str, list[int]] = {c: [] for c in CELLS}
    for i, ex in enumerate(examples):
        gender = "male" if ex.meta["male"] >= IDENTITY_THRESHOLD else "female"
        by_cell[f"{gender}_{'toxic' if ex.target == TOXIC else 'nontoxic'}"].append(i)
    rng = random.Random(f"toxicity-sample:{seed}:{what}")
    quota = {c: size // len(CELLS) + (1 if k < size % len(CELLS) else 0) for k, c in enumerate(CELLS)}
    short = {c: (len(by_cell[c]), quota[c]) for c in CELLS if len(by_cell[c]) < quota[c]}
    if short:
        raise InvalidParameter(
            f"{what}: cannot draw a balanced sample of {size}; too few comments in "
            f"{', '.join(f'{c} ({have} < {need})' for c, (have, need) in short.items())}"
        )
    chosen = sorted(i for c in CELLS for i in rng.sample(by_cell[c], quota[c]))
    return [examples[i] for i in chosen]


def read_wilds_csv(path: Path, malformed: MalformedRows) -> dict[str, list[Example]]:
    """Every male- or female-identified comment of a CivilComments-WILDS ``all_data_with_identities.csv``, by split
    (``val`` -> ``validation``); unreadable rows are counted in ``malformed`` with the reason."""
    import pandas as pd

    required = ["comment_text", "toxicity", "male", "female", "split"]
    header = pd.read_csv(path, nrows=0)
    missing = [c for c in required if c not in header.columns]
    if missing:
        raise InvalidParameter(
            f"{str(path)!r} is not a CivilComments-WILDS release file: columns {missing} are "
            f"missing (found {list(header.columns)[:12]}...); expected {required}"
        )
    ids = "id" if "id" in header.columns else None
    frame = pd.read_csv(
        path,
        usecols=required + ([ids] if ids else []),
        dtype={"comment_text": str, "split": str},
        keep_default_na=False,
        na_values={"toxicity": [""], "male": [""], "female": [""]},
    )
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    names = {"train": "train", "val": "validation", "test": "test"}
    for row_no, row in enumerate(frame.itertuples(index=False)):
        record = row._asdict()
        split = names.get(record["split"])
        text = record["comment_text"]
        toxicity = _score_value(record["toxicity"])
        male, female = _score_value(record["male"]), _score_value(record["female"])
        if split is None:
            malformed.add(f"unknown split {record['split']!r} (expected train, val or test)", record)
            continue
        if not isinstance(text, str) or not text.strip():
            malformed.add("empty comment_text", record)
            continue
        if toxicity is None or record["toxicity"] != record["toxicity"]:
            malformed.add("toxicity missing or outside [0, 1]", record)
            continue
        if male is None or female is None:
            malformed.add("male/female identity score outside [0, 1]", record)
            continue
        if male < IDENTITY_THRESHOLD and female < IDENTITY_THRESHOLD:
            continue  # not a male/female-identified comment: outside the study's population, not malformed
        row_id = record[ids] if ids else row_no
        splits[split].append(
            _example(f"wilds-{row_id}", text.strip(), toxicity >= 0.5, male, female, row=row_no, toxicity=toxicity)
        )
    return splits


def _find_csv(root: Path) -> Path:
    """The release CSV: ``root`` itself, or ``all_data_with_identities.csv`` under it (any depth, e.g. the
    ``civilcomments_v1.0`` folder WILDS downloads)."""
    if root.is_file():
        return root
    found = sorted(root.rglob(LOCAL_FILE))
    if not found:
        raise InvalidParameter(
            f"no {LOCAL_FILE} under {str(root)!r}; pass data_path= the CivilComments-WILDS file "
            "or its folder (WILDS: civilcomments_v1.0/)"
        )
    return found[0]


def load_offline(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """SYNTHETIC comments (default 800 / 100 / 200, balanced over the four cells)."""
    reject_options(TASK, "offline", options, _OPTIONS["offline"])
    splits = synthetic_comments.generate(seed=seed, sizes=options.get("sizes"))
    examples = {
        name: [_example(r["id"], r["text"], r["toxic"], r["male"], r["female"], **r["meta"]) for r in rows]
        for name, rows in splits.items()
    }
    return TaskData(
        task=TASK,
        source=Source.OFFLINE,
        origin=f"{synthetic_comments.ORIGIN}, seed={seed}",
        splits=examples,
        synthetic=True,
    )


def load_local(path=None, *, seed: int = 0, **options: Any) -> TaskData:
    """The WILDS release CSV, male/female comments only, with a balanced seeded sample (option ``sample``)."""
    reject_options(TASK, "local", options, _OPTIONS["local"])
    sample = options.get("sample", DEFAULT_SAMPLE)
    if sample is not None:
        if not isinstance(sample, Mapping):
            raise InvalidParameter(f"sample must be a mapping split -> size or None, got {sample!r}")
        for split, size in sample.items():
            if split not in SPLITS:
                raise InvalidParameter(f"unknown split {split!r} in sample; valid splits: {', '.join(SPLITS)}")
            check_range(f"sample size of split {split!r}", size, 0, None, integer=True)
    root = require_path(path, "CivilComments-WILDS")
    file = _find_csv(root)
    malformed = MalformedRows()
    splits = read_wilds_csv(file, malformed)
    if sample is not None:
        splits = {
            s: balanced_sample(splits[s], sample[s], seed, f"{file.name} {s}") if s in sample else splits[s]
            for s in splits
        }
    origin = (
        f"{file} (CivilComments-WILDS release, male/female identity >= {IDENTITY_THRESHOLD}; "
        + (f"balanced seeded sample {dict(sample)}, seed={seed}" if sample is not None else "all rows")
        + "; not the study's subset)"
    )
    return TaskData(task=TASK, source=Source.LOCAL, origin=origin, splits=splits, malformed=malformed)


def load_hub(path=None, *, seed: int = 0, revision: str | None = None, **options: Any) -> TaskData:
    """The study's ``yanyiwei/civil-comments-sampled`` (needs network or the datasets cache)."""
    reject_options(TASK, "hub", options, _OPTIONS["hub"])
    malformed = MalformedRows()

    def convert(split: str, part: Any) -> list[Example]:
        missing = [c for c in ("text", "label", "male", "female") if c not in part.column_names]
        if missing:
            raise InvalidParameter(f"{HUB_DATASET} split {split!r} lacks columns {missing}; found {part.column_names}")
        examples = []
        for idx, row in enumerate(part):
            text, label = row.get("text"), row.get("label")
            male, female = _score_value(row.get("male")), _score_value(row.get("female"))
            if not isinstance(text, str) or not text.strip():
                malformed.add(f"{split}: empty text", row)
            elif not isinstance(label, str):
                malformed.add(f"{split}: label {label!r} is not a string", row)
            elif male is None or female is None:
                malformed.add(f"{split}: male/female score outside [0, 1]", row)
            else:
                # the study's rule: toxic iff the label string contains "Y"; the index is kept for the shots
                examples.append(
                    _example(
                        f"civil-sampled-{split}-{idx:04d}", text, "Y" in label, male, female, row=idx, raw_label=label
                    )
                )
        return examples

    splits = load_hub_splits(HUB_DATASET, revision, convert, {s: s for s in SPLITS})
    return TaskData(
        task=TASK, source=Source.HUB, origin=HUB_DATASET, splits=splits, revision=revision, malformed=malformed
    )
