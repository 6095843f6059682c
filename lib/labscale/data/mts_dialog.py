"""MTS-Dialog for the ``summarization`` task: the study's Hugging Face copy, the release CSVs, and synthetic
dialogues (:func:`load_offline`, :mod:`labscale.data.synthetic_dialogues`).

* :func:`load_hub` reads ``beanham/medsum`` (splits train / validation / test), the copy the study used.
* :func:`load_release` reads the official CSVs (Ben Abacha et al., EACL 2023; ``abachaa/MTS-Dialog``, CC BY 4.0):
  the training set (1,201) -> train, the validation set (100) -> validation, and test sets 1 and 2 (MEDIQA-Chat
  and MEDIQA-Sum 2023, 200 each) -> test (400, the size of the study's test set). ``test_set="1"`` or ``"2"``
  reads only that test set (200 items); ``"both"`` (the default) reads both.

A release row whose ``section_header`` is not one of the release's 20 headers (:data:`SECTION_HEADERS`; each of
them occurs in all four CSVs) is dropped and counted in ``Release.malformed`` as
``unknown section_header '<value>'``; headers are matched exactly, so a lower-cased or misspelled header is
reported, never mapped onto a known one.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import Example, MalformedRows, Source, TaskData, reject_options, require_path
from ..errors import InvalidParameter
from ..hashing import sha256_files
from . import synthetic_dialogues
from .hub import load_hub_splits

TASK = "summarization"
HUB_ID = "beanham/medsum"
HUB_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
RELEASE_FOLDER = "mts-dialog"
#: split -> (file tag used in example ids, file name), in reading order
RELEASE_FILES = {
    "train": (("train", "MTS-Dialog-TrainingSet.csv"),),
    "validation": (("valid", "MTS-Dialog-ValidationSet.csv"),),
    "test": (
        ("test1", "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv"),
        ("test2", "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv"),
    ),
}
COLUMNS = ("ID", "section_header", "section_text", "dialogue")
#: ``test_set`` choices: which release test set(s) make the test split
TEST_SETS = ("1", "2", "both")
#: the 20 section headers of the release (each occurs in all four CSVs of commit 3ff0801)
SECTION_HEADERS = frozenset(
    {
        "ALLERGY",
        "ASSESSMENT",
        "CC",
        "DIAGNOSIS",
        "DISPOSITION",
        "EDCOURSE",
        "EXAM",
        "FAM/SOCHX",
        "GENHX",
        "GYNHX",
        "IMAGING",
        "IMMUNIZATIONS",
        "LABS",
        "MEDICATIONS",
        "OTHER_HISTORY",
        "PASTMEDICALHX",
        "PASTSURGICAL",
        "PLAN",
        "PROCEDURES",
        "ROS",
    }
)


def hub_rows(revision: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The study's splits as ``{split: [{"id", "dialogue", "section_header", "section_text"}, ...]}``."""

    def convert(name: str, part: Any) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{name}-{i:05d}",
                "dialogue": row["dialogue"],
                "section_header": row["section_header"],
                "section_text": row["section_text"],
            }
            for i, row in enumerate(part)
        ]

    return load_hub_splits(HUB_ID, revision, convert, HUB_SPLITS)


@dataclass
class Release:
    """The parsed release CSVs: rows per split, dropped rows, and the files read."""

    files: list[Path]
    splits: dict[str, list[dict[str, Any]]]
    malformed: MalformedRows = field(default_factory=MalformedRows)


def check_test_set(test_set: object) -> str:
    """``test_set`` as one of :data:`TEST_SETS` (the integers 1 and 2 are accepted for "1" and "2");
    :class:`~labscale.errors.InvalidParameter` naming the valid choices otherwise."""
    value = str(test_set) if isinstance(test_set, int) and not isinstance(test_set, bool) else test_set
    if value not in TEST_SETS:
        raise InvalidParameter(
            f"unknown MTS-Dialog test_set {test_set!r}; valid choices: '1' (TestSet-1, "
            "MEDIQA-Chat 2023), '2' (TestSet-2, MEDIQA-Sum 2023), 'both' (the two, 400 items)"
        )
    return value


def release_files(test_set: str = "both") -> dict[str, tuple[tuple[str, str], ...]]:
    """:data:`RELEASE_FILES` with the test split restricted to ``test_set``."""
    test_set = check_test_set(test_set)
    files = dict(RELEASE_FILES)
    if test_set != "both":
        files["test"] = tuple(part for part in RELEASE_FILES["test"] if part[0] == f"test{test_set}")
    return files


def release_folder(path: str | Path) -> Path:
    """The folder holding the CSVs: ``path`` itself or its ``mts-dialog`` subfolder (the shared data root)."""
    path = Path(path)
    first = RELEASE_FILES["train"][0][1]
    for candidate in (path, path / RELEASE_FOLDER):
        if (candidate / first).is_file():
            return candidate
    raise InvalidParameter(
        f"no MTS-Dialog release at {str(path)!r}: expected {first} in it or in its {RELEASE_FOLDER}/ subfolder"
    )


def load_release(path: str | Path, test_set: str = "both") -> Release:
    """Read the CSVs (the test split from ``test_set``: "1", "2" or "both"); rows with an empty dialogue,
    section text or header, an unknown section header, or missing fields are dropped and counted."""
    wanted = release_files(test_set)  # a bad test_set is named before any file is opened
    folder = release_folder(path)
    malformed = MalformedRows()
    splits: dict[str, list[dict[str, Any]]] = {}
    files: list[Path] = []
    for split, parts in wanted.items():
        rows: list[dict[str, Any]] = []
        for tag, name in parts:
            file = folder / name
            if not file.is_file():
                raise InvalidParameter(
                    f"MTS-Dialog file {name} is missing from {str(folder)!r}; expected "
                    f"{', '.join(n for ps in wanted.values() for _, n in ps)}"
                )
            files.append(file)
            with file.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise InvalidParameter(
                        f"{name} lacks the column(s) {', '.join(missing)}; its header is "
                        f"{reader.fieldnames!r}, expected {', '.join(COLUMNS)}"
                    )
                for line_no, row in enumerate(reader, 2):
                    if any(row.get(c) is None for c in COLUMNS) or None in row:
                        malformed.add(
                            "missing or extra fields",
                            {"file": name, "row": line_no, **{str(k): v for k, v in row.items()}},
                        )
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
                    if row["section_header"].strip() not in SECTION_HEADERS:
                        malformed.add(
                            f"unknown section_header {row['section_header'].strip()!r}",
                            {"file": name, "row": line_no, **row},
                        )
                        continue
                    rows.append(
                        {
                            "id": f"mts-{tag}-{row['ID'].strip()}",
                            "dialogue": row["dialogue"].strip(),
                            "section_header": row["section_header"].strip(),
                            "section_text": row["section_text"].strip(),
                            "meta": {"file": name, "ID": row["ID"].strip()},
                        }
                    )
        splits[split] = rows
    return Release(files=files, splits=splits, malformed=malformed)


# -- the task's three sources ----------------------------------------------------------------------------------
def _examples(rows: Sequence[Mapping[str, Any]]) -> list[Example]:
    # meta["kind"] (the section header) lets run records break results down by section
    return [
        Example(
            id=r["id"],
            fields={"dialogue": r["dialogue"], "section_header": r["section_header"]},
            target=r["section_text"],
            meta={**(r.get("meta") or {}), "kind": r["section_header"]},
        )
        for r in rows
    ]


def _refuse_test_set(source: str, options: Mapping[str, Any]) -> None:
    """``test_set`` picks a file of the MTS-Dialog release: only source 'local' has one."""
    if options.get("test_set") is not None:
        raise InvalidParameter(
            f"test_set={options['test_set']!r} selects an MTS-Dialog release test set "
            f"('1', '2' or 'both') and needs source='local'; source {source!r} has one "
            "fixed test split"
        )


def load_offline(
    path=None,
    *,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    accepted: Sequence[str] = (),
    **options: Any,
) -> TaskData:
    """SYNTHETIC dialogues from :mod:`labscale.data.synthetic_dialogues` (default 300 / 40 / 60). ``accepted``
    names options the caller already took, listed as valid when an unknown option is refused."""
    _refuse_test_set("offline", options)
    reject_options(TASK, "offline", options, tuple(accepted))
    splits = synthetic_dialogues.generate(seed=seed, sizes=sizes)
    return TaskData(
        task=TASK,
        source=Source.OFFLINE,
        origin=f"{synthetic_dialogues.ORIGIN}, seed={seed}",
        splits={k: _examples(v) for k, v in splits.items()},
        synthetic=True,
    )


def load_local(
    path=None, *, seed: int = 0, test_set: str | int | None = None, accepted: Sequence[str] = (), **options: Any
) -> TaskData:
    """The official MTS-Dialog CSVs; the test split is TestSet-1 + TestSet-2 (``test_set="both"``, the
    default), or one of them (``test_set="1"`` or ``"2"``)."""
    test_set = check_test_set("both" if test_set is None else test_set)
    reject_options(TASK, "local", options, ("test_set", *accepted))
    release = load_release(require_path(path, "MTS-Dialog", "mts-dialog"), test_set=test_set)
    test = {
        "1": "TestSet-1 (MEDIQA-Chat 2023)",
        "2": "TestSet-2 (MEDIQA-Sum 2023)",
        "both": "TestSet-1 + TestSet-2",
    }[test_set]
    origin = f"{release.files[0].parent} (MTS-Dialog release, abachaa/MTS-Dialog, CC BY 4.0; test = {test})"
    return TaskData(
        task=TASK,
        source=Source.LOCAL,
        origin=origin,
        splits={k: _examples(v) for k, v in release.splits.items()},
        malformed=release.malformed,
        content_hash=sha256_files(release.files),
    )


def load_hub(
    path=None, *, seed: int = 0, revision: str | None = None, accepted: Sequence[str] = (), **options: Any
) -> TaskData:
    """The study's dataset ``beanham/medsum`` (needs network or the datasets cache)."""
    _refuse_test_set("hub", options)
    reject_options(TASK, "hub", options, tuple(accepted))
    return TaskData(
        task=TASK,
        source=Source.HUB,
        origin=HUB_ID,
        splits={k: _examples(v) for k, v in hub_rows(revision).items()},
        revision=revision,
    )
