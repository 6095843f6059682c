"""The study's released summarization outputs: 32 runs x 400 generated summaries of its real models, and the
metric file the authors computed for each (registry dataset ``study-outputs``).

The authors committed them to their development repository (``BillHoweLab/lab-scale-ai``, branch ``beanham``,
commit :data:`COMMIT`, folder ``tasks/results/``). Each run is a pair: ``<stem>.npy``, a numpy array of 400 unicode
strings read with ``numpy.load(..., allow_pickle=False)``, and its metric file (``<stem>.json``; the GPT few-shot
runs name it ``<stem-less-"_outputs">_results.json``). Item ``i`` of every array answers item ``i`` of MTS-Dialog
TestSet-1 followed by TestSet-2 (:func:`labscale.data.mts_dialog.load_local` with ``test_set="both"``).

:data:`CATALOGUE` says what each run is, from the file names and the authors' commit messages. :func:`load_runs`
refuses a file that is not the registry's (sha256), an array that is pickled, not text or not 400 long, and a
metric file that is not the authors' JSON, each naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameter, LabscaleError, check_choices
from . import registry

DATASET = "study-outputs"
FOLDER = "summarization"
REPOSITORY = "BillHoweLab/lab-scale-ai"
COMMIT = "6bed44004d599938734770063a5ec76794f7a3ad"
UPSTREAM_FOLDER = "tasks/results"
#: summaries per run: MTS-Dialog TestSet-1 (200) then TestSet-2 (200)
ITEMS = 400

_SHOTS = {"zero": 0, "one": 1, "two": 2, "three": 3}
_OPEN = {"mistral": "mistral-7b-instruct", "llama-2": "llama-2-7b-chat", "falcon": "falcon-7b-instruct"}
_GPT = {"35": "gpt-3.5-turbo", "4": "gpt-4-turbo"}
#: the label of a checkpoint of the summarization fine-tune whose checkpoints were released (base model not recorded)
CHECKPOINT_MODEL = "checkpoint-{step}"
#: the label of Llama-2 run with another task's adapter (which adapter is not recorded)
CROSS_TASK_MODEL = "llama-2-7b-chat + cross-task adapter"


class ReleasedOutputsError(LabscaleError, ValueError):
    """A released-outputs file that is not what the registry and the authors' format describe."""


@dataclass(frozen=True)
class RunInfo:
    """What a released run is: its model label, scenario, shots, group ("main", "checkpoint", "cross-task") and
    training step (checkpoints only)."""

    stem: str
    model: str
    scenario: str
    shots: int
    group: str
    step: int | None = None

    @property
    def metrics_file(self) -> str:
        """The authors' metric file of this run (GPT few-shot runs name it ``..._results.json``)."""
        if self.model in _GPT.values() and self.scenario != "fine-tuned":
            return self.stem.removesuffix("_outputs") + "_results.json"
        return self.stem + ".json"


def describe(stem: str) -> RunInfo:
    """The :class:`RunInfo` of a released file stem; :class:`InvalidParameter` naming the known stems otherwise."""
    shot = "(?P<shot>zero|one|two|three)shot_outputs"
    patterns = (
        (rf"(?P<family>mistral|llama-2|falcon)_(?P<kind>pretrained|finetuned)_model_{shot}", "main"),
        (rf"gpt(?P<gpt>35|4)_(?:(?P<ft>finetuned)_)?{shot}", "main"),
        (rf"checkpoint-(?P<step>\d+)_finetuned_model_{shot}", "checkpoint"),
        (rf"Llama-2-7b-chat-hf_finetuned_model_{shot}", "cross-task"),
    )
    for pattern, group in patterns:
        m = re.fullmatch(pattern, stem)
        if m is None:
            continue
        shots = _SHOTS[m["shot"]]
        found = m.groupdict()
        if group == "checkpoint":
            return RunInfo(stem, CHECKPOINT_MODEL.format(step=m["step"]), "fine-tuned", 0, group, int(m["step"]))
        if group == "cross-task":
            return RunInfo(stem, CROSS_TASK_MODEL, f"{shots}-shot", shots, group)
        tuned = found.get("kind") == "finetuned" or found.get("ft") == "finetuned"
        model = _OPEN[m["family"]] if found.get("family") else _GPT[m["gpt"]]
        return RunInfo(stem, model, "fine-tuned" if tuned else f"{shots}-shot", shots, group)
    raise InvalidParameter(f"unknown released run {stem!r}; valid choices: {', '.join(map(repr, stems()))}")


def stems() -> list[str]:
    """Every released run's file stem, in the registry's order."""
    return [Path(f.path).stem for f in registry.files(DATASET) if f.path.endswith(".npy")]


#: every released run, by file stem
CATALOGUE: dict[str, RunInfo] = {}


def catalogue() -> dict[str, RunInfo]:
    """Every released run (stem -> :class:`RunInfo`), read once from the registry's file list."""
    if not CATALOGUE:
        CATALOGUE.update({stem: describe(stem) for stem in stems()})
    return CATALOGUE


@dataclass(frozen=True)
class ReleasedRun:
    """One released run: what it is, its 400 summaries, the authors' metrics, and its files' sha256."""

    info: RunInfo
    summaries: tuple[str, ...]
    authors_metrics: Mapping[str, Any]
    sha256: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> dict[str, Any]:
        """The run's identity in its run record: where it came from and the hash of what was read."""
        return {
            "model": f"released:{self.info.stem}",
            "revision": COMMIT,
            "origin": REPOSITORY,
            "commit": COMMIT,
            "file": f"{UPSTREAM_FOLDER}/{self.info.stem}.npy",
            "sha256": self.sha256[f"{self.info.stem}.npy"],
            "metrics_file": f"{UPSTREAM_FOLDER}/{self.info.metrics_file}",
            "metrics_sha256": self.sha256[self.info.metrics_file],
        }


def check_stems(wanted: str | Iterable[str] | None) -> list[str]:
    """``wanted`` (one stem, several, or None for all) as a list of known stems; an unknown one is named."""
    return list(catalogue()) if wanted is None else check_choices("released run", wanted, list(catalogue()))


def read_summaries(path: str | Path, items: int = ITEMS) -> tuple[str, ...]:
    """The summaries of one ``.npy`` file: a 1-D array of ``items`` unicode strings, read without unpickling."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if handle.read(6) != b"\x93NUMPY":  # the .npy magic string
                raise ReleasedOutputsError(f"{path.name} is not a numpy .npy file (no .npy header)")
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy refuses object (pickled) arrays when allow_pickle=False
        raise ReleasedOutputsError(
            f"{path.name} is not a plain numpy array of text ({exc}); released outputs are read with "
            "allow_pickle=False and never unpickled"
        ) from None
    except (OSError, EOFError) as exc:
        raise ReleasedOutputsError(f"{path.name} is not a numpy .npy file ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind != "U" or array.ndim != 1:
        raise ReleasedOutputsError(
            f"{path.name} holds a {getattr(array, 'ndim', '?')}-D array of dtype {getattr(array, 'dtype', '?')}; "
            "expected a 1-D array of unicode strings"
        )
    if len(array) != items:
        raise ReleasedOutputsError(
            f"{path.name} holds {len(array)} summaries; expected {items} (MTS-Dialog TestSet-1 then TestSet-2)"
        )
    return tuple(str(s) for s in array)


def read_authors_metrics(path: str | Path) -> dict[str, Any]:
    """The authors' metric file: ROUGE, BLEU (with its breakdown) and BERTScore, as HF ``evaluate`` wrote them."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleasedOutputsError(f"{path.name} is not a JSON metric file ({exc})") from None
    missing = [k for k in ("rouge", "bleu", "bertscore") if not isinstance(payload.get(k), dict)]
    if missing:
        raise ReleasedOutputsError(f"{path.name} lacks the metric section(s) {', '.join(missing)}")
    return payload


def load_runs(
    wanted: str | Iterable[str] | None = None, *, path: str | Path | None = None, items: int = ITEMS
) -> list[ReleasedRun]:
    """The released runs ``wanted`` (stems; None: all 32), from the registry's verified copy or from ``path``
    (a folder holding ``summarization/`` or the files themselves). Every file read is checked against the
    registry's sha256, so a changed or corrupted copy is refused naming the file, whatever its origin."""
    chosen = check_stems(wanted)
    root = registry.locate(DATASET, path)
    folder = root / FOLDER if (root / FOLDER).is_dir() else root
    expected = {Path(f.path).name: f.sha256 for f in registry.files(DATASET)}
    runs = []
    for stem in chosen:
        info = catalogue()[stem]
        hashes = {}
        for name in (f"{stem}.npy", info.metrics_file):
            file = folder / name
            if not file.is_file():
                raise registry.DataMissing(
                    f"released run file {name} is missing from {folder}",
                    file=name,
                    fix=f"labscale-data fetch {DATASET}",
                )
            actual = registry.sha256_of(file)
            if actual != expected[name]:
                raise registry.ChecksumMismatch(
                    f"{file} is not the authors' released file: sha256 expected {expected[name]}, actual {actual}",
                    file=name,
                    expected=expected[name],
                    actual=actual,
                    fix=f"labscale-data fetch --force {DATASET}",
                )
            hashes[name] = actual
        runs.append(
            ReleasedRun(
                info=info,
                summaries=read_summaries(folder / f"{stem}.npy", items),
                authors_metrics=read_authors_metrics(folder / info.metrics_file),
                sha256=hashes,
            )
        )
    return runs


__all__ = [
    "CATALOGUE",
    "COMMIT",
    "DATASET",
    "ITEMS",
    "REPOSITORY",
    "ReleasedOutputsError",
    "ReleasedRun",
    "RunInfo",
    "catalogue",
    "check_stems",
    "describe",
    "load_runs",
    "read_authors_metrics",
    "read_summaries",
    "stems",
]
