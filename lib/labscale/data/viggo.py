"""ViGGO (Juraska et al. 2019): video-game dialogue acts and their utterances, for two tasks.

* ``viggo``: utterance -> meaning representation (MR), the companion study's direction ("given the sentence, write
  its function and attributes"): one item per (utterance, MR) row.
* ``viggo_nlg``: MR -> utterance, ViGGO's original data-to-text direction: one item per distinct MR, with all its
  human references.

Sources:

* ``"local"``: the release CSVs ``train.csv`` / ``valid.csv`` / ``test.csv`` (columns ``mr``, ``ref``; the registry's
  ``viggo`` dataset, 5,103 / 714 / 1,083 rows; 1,675 / 238 / 359 distinct MRs), ViGGO's own split.
* ``"hub"``: ``GEM/viggo`` (``meaning_representation``, ``target``, ``references``), the companion study's copy.

Rows dropped and counted in ``TaskData.malformed``: an empty MR or utterance, an MR that does not parse
(:func:`labscale.viggo_eval.parse_mr`) or names a dialogue act outside ViGGO's nine.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter, check_choice
from ..hashing import sha256_files
from ..viggo_eval import parse_mr
from .hub import load_hub_splits

DATASET = "viggo"
HUB_ID = "GEM/viggo"
FILES = {"train": "train.csv", "validation": "valid.csv", "test": "test.csv"}
#: task name -> direction of the items
DIRECTIONS = {"viggo": "to_mr", "viggo_nlg": "to_text"}


def release_folder(path: str | Path) -> Path:
    """The folder holding the three release CSVs (``path`` itself or its ``viggo/`` subfolder)."""
    path = Path(path)
    for folder in (path, path / DATASET):
        if all((folder / name).is_file() for name in FILES.values()):
            return folder
    raise InvalidParameter(f"no ViGGO release ({', '.join(FILES.values())}) under {str(path)!r}")


def checked_pairs(rows: Iterable[tuple[Any, Any]], malformed: MalformedRows) -> list[tuple[str, str]]:
    """``(mr, utterance)`` pairs whose MR parses into one of ViGGO's dialogue acts; the rest counted as malformed."""
    kept = []
    for mr, ref in rows:
        mr, ref = str(mr or "").strip(), " ".join(str(ref or "").split())
        if not mr or not ref:
            malformed.add("meaning representation or utterance missing", {"mr": mr, "ref": ref})
            continue
        parsed = parse_mr(mr)
        if parsed is None or not parsed.known:
            malformed.add("meaning representation does not parse into a ViGGO dialogue act", {"mr": mr, "ref": ref})
            continue
        kept.append((mr, ref))
    return kept


def read_release(path: str | Path) -> tuple[dict[str, list[tuple[str, str]]], MalformedRows, list[Path]]:
    """The release's ``(mr, utterance)`` pairs per split, malformed rows counted."""
    folder = release_folder(path)
    malformed = MalformedRows()
    splits, files = {}, []
    for split, name in FILES.items():
        file = folder / name
        files.append(file)
        with file.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"mr", "ref"} <= set(reader.fieldnames or ()):
                raise InvalidParameter(f"{file} has columns {reader.fieldnames}; ViGGO's are mr, ref")
            splits[split] = checked_pairs(((row["mr"], row["ref"]) for row in reader), malformed)
    return splits, malformed, files


def _examples(split: str, pairs: list[tuple[str, str]], direction: str) -> list[Example]:
    if direction == "to_mr":
        return [
            Example(
                id=f"{split}-{i:05d}",
                fields={"sentence": ref},
                target=mr,
                meta={"function": mr.split("(", 1)[0].strip()},
            )
            for i, (mr, ref) in enumerate(pairs)
        ]
    references: dict[str, list[str]] = {}
    for mr, ref in pairs:
        references.setdefault(mr, []).append(ref)
    return [
        Example(
            id=f"{split}-{i:05d}",
            fields={"mr": mr, "references": refs},
            target=refs[0],
            meta={"function": mr.split("(", 1)[0].strip()},
        )
        for i, (mr, refs) in enumerate(references.items())
    ]


def _task_data(task: str, source: str, origin: str, pairs, malformed, **extra: Any) -> TaskData:
    direction = DIRECTIONS[task]
    return TaskData(
        task=task,
        source=source,
        origin=origin,
        splits={split: _examples(split, rows, direction) for split, rows in pairs.items()},
        malformed=malformed,
        **extra,
    )


def _check_task(task: str) -> str:
    check_choice("ViGGO task", task, tuple(DIRECTIONS))
    return task


def load_offline(path=None, *, seed: int = 0, task: str = "viggo", **options: Any) -> TaskData:
    """No generator: ViGGO's MRs and utterances are human-written. Fails naming the sources that work."""
    raise InvalidParameter(
        f"task {_check_task(task)!r} has no offline generator; use source='local' (the ViGGO release through the "
        "data registry, available offline once fetched) or source='hub'"
    )


def load_local(path=None, *, seed: int = 0, task: str = "viggo", **options: Any) -> TaskData:
    """The ViGGO release CSVs, ViGGO's own split."""
    reject_options(_check_task(task), "local", options)
    pairs, malformed, files = read_release(require_path(path, "ViGGO", DATASET))
    origin = f"{files[0].parent} (ViGGO v1 release CSVs, jjuraska/data2text-nlg; ViGGO's own split)"
    return _task_data(task, Source.LOCAL, origin, pairs, malformed, content_hash=sha256_files(files) + f":{task}")


def hub_pairs(revision: str | None = None, *, dataset_id: str = HUB_ID) -> tuple[dict[str, list], MalformedRows]:
    """``GEM/viggo``'s ``(meaning_representation, target)`` pairs per split, malformed rows counted."""
    malformed = MalformedRows()

    def convert(name: str, part: Any) -> list[tuple[str, str]]:
        rows: list[Mapping[str, Any]] = list(part)
        if rows and not {"meaning_representation", "target"} <= set(rows[0]):
            raise InvalidParameter(
                f"{dataset_id} rows have columns {sorted(rows[0])}; expected meaning_representation and target"
            )
        return checked_pairs(((r["meaning_representation"], r["target"]) for r in rows), malformed)

    return load_hub_splits(dataset_id, revision, convert), malformed


def load_hub(
    path=None,
    *,
    seed: int = 0,
    task: str = "viggo",
    revision: str | None = None,
    dataset_id: str | None = None,
    **options: Any,
) -> TaskData:
    """``GEM/viggo`` (or ``dataset_id=...``; needs network or the datasets cache)."""
    reject_options(_check_task(task), "hub", options)
    dataset = dataset_id or HUB_ID
    pairs, malformed = hub_pairs(revision, dataset_id=dataset)
    return _task_data(task, Source.HUB, f"{dataset} (GEM's ViGGO)", pairs, malformed, revision=revision)
