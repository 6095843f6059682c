"""MTS-Dialog for the clinical-dialogue summarization task: the study's Hugging Face copy and the release CSVs.

* :func:`load_hub` reads ``beanham/medsum`` (splits train / validation / test), the copy the study used.
* :func:`load_release` reads the official CSVs (Ben Abacha et al., EACL 2023; ``abachaa/MTS-Dialog``, CC BY 4.0):
  the training set (1,201) -> train, the validation set (100) -> validation, and test sets 1 and 2 (MEDIQA-Chat
  and MEDIQA-Sum 2023, 200 each) -> test (400, the size of the study's test set).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from ..tasks.base import MalformedRows
from .hub import load_hub_dataset

HUB_ID = "beanham/medsum"
HUB_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
RELEASE_FOLDER = "mts-dialog"
#: split -> (file tag used in example ids, file name), in reading order
RELEASE_FILES = {
    "train": (("train", "MTS-Dialog-TrainingSet.csv"),),
    "validation": (("valid", "MTS-Dialog-ValidationSet.csv"),),
    "test": (("test1", "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv"),
             ("test2", "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv")),
}
COLUMNS = ("ID", "section_header", "section_text", "dialogue")


def load_hub(revision: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The study's splits as ``{split: [{"id", "dialogue", "section_header", "section_text"}, ...]}``."""
    dataset = load_hub_dataset(HUB_ID, revision)
    splits: dict[str, list[dict[str, Any]]] = {}
    for hub_name, name in HUB_SPLITS.items():
        if hub_name not in dataset:
            continue
        splits[name] = [{"id": f"{name}-{i:05d}", "dialogue": row["dialogue"],
                         "section_header": row["section_header"], "section_text": row["section_text"]}
                        for i, row in enumerate(dataset[hub_name])]
    return splits


@dataclass
class Release:
    """The parsed release CSVs: rows per split, dropped rows, and the files read."""

    files: list[Path]
    splits: dict[str, list[dict[str, Any]]]
    malformed: MalformedRows = field(default_factory=MalformedRows)


def release_folder(path: str | Path) -> Path:
    """The folder holding the CSVs: ``path`` itself or its ``mts-dialog`` subfolder (the shared data root)."""
    path = Path(path)
    first = RELEASE_FILES["train"][0][1]
    for candidate in (path, path / RELEASE_FOLDER):
        if (candidate / first).is_file():
            return candidate
    raise InvalidParameter(f"no MTS-Dialog release at {str(path)!r}: expected {first} in it or in its "
                           f"{RELEASE_FOLDER}/ subfolder")


def load_release(path: str | Path) -> Release:
    """Read the four CSVs; rows with an empty dialogue or section text, or missing fields, are dropped."""
    folder = release_folder(path)
    malformed = MalformedRows()
    splits: dict[str, list[dict[str, Any]]] = {}
    files: list[Path] = []
    for split, parts in RELEASE_FILES.items():
        rows: list[dict[str, Any]] = []
        for tag, name in parts:
            file = folder / name
            if not file.is_file():
                raise InvalidParameter(f"MTS-Dialog file {name} is missing from {str(folder)!r}; expected "
                                       f"{', '.join(n for ps in RELEASE_FILES.values() for _, n in ps)}")
            files.append(file)
            with file.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise InvalidParameter(f"{name} lacks the column(s) {', '.join(missing)}; its header is "
                                           f"{reader.fieldnames!r}, expected {', '.join(COLUMNS)}")
                for line_no, row in enumerate(reader, 2):
                    if any(row.get(c) is None for c in COLUMNS) or None in row:
                        malformed.add("missing or extra fields", {"file": name, "row": line_no, **{
                            str(k): v for k, v in row.items()}})
                        continue
                    if not row["dialogue"].strip():
                        malformed.add("empty dialogue", {"file": name, **row})
                        continue
                    if not row["section_text"].strip():
                        malformed.add("empty section_text", {"file": name, **row})
                        continue
                    if not row["section_header"].strip():
                        malformed.add("empty section_header", {"file": name, **row})
                        continue
                    rows.append({"id": f"mts-{tag}-{row['ID'].strip()}", "dialogue": row["dialogue"].strip(),
                                 "section_header": row["section_header"].strip(),
                                 "section_text": row["section_text"].strip(),
                                 "meta": {"file": name, "ID": row["ID"].strip()}})
        splits[split] = rows
    return Release(files=files, splits=splits, malformed=malformed)
