"""The bottom of the package: the base types every layer shares (data, tasks, metrics, parsing, the runner).

An :class:`Example` is one evaluation item; a :class:`TaskData` holds the splits of one task loaded from one
*source* with their provenance; :class:`MalformedRows` counts the rows a loader had to drop. :data:`INVALID` is the
parsed outcome of a reply that does not follow the requested format. The enums name the fixed vocabularies --
data sources, splits and scenarios -- with values equal to the strings written in run records and tables.

This module imports nothing from :mod:`labscale` but :mod:`labscale.errors` and :mod:`labscale.config`, so every
other module can import it without a cycle.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import InvalidParameter, check_choice

#: The parsed outcome of a reply that does not follow the requested format. It is always scored as wrong.
INVALID = "INVALID"


class Source(StrEnum):
    """Where a task's data comes from: generated offline, the original release files, or the study's hub copy."""

    OFFLINE = "offline"
    LOCAL = "local"
    HUB = "hub"


class Split(StrEnum):
    """The splits a task's data may have (BBQ has only ``test``)."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class Scenario(StrEnum):
    """How a model was evaluated on a task: k fixed shots, or zero-shot with the task's fine-tuned adapter.

    The values are the ``scenario`` strings of run records and result tables ("0-shot" ... "3-shot", "fine-tuned").
    """

    ZERO_SHOT = "0-shot"
    ONE_SHOT = "1-shot"
    TWO_SHOT = "2-shot"
    THREE_SHOT = "3-shot"
    FINE_TUNED = "fine-tuned"

    @classmethod
    def of(cls, shots: int, *, tuned: bool = False) -> Scenario:
        """The scenario of a run with ``shots`` shots, or :attr:`FINE_TUNED` when ``tuned``."""
        if tuned:
            return cls.FINE_TUNED
        try:
            return cls(f"{shots}-shot")
        except ValueError:
            raise InvalidParameter(
                f"no scenario for {shots!r} shots; valid choices: {', '.join(map(repr, SCENARIOS))}"
            ) from None


#: Every data source a task may offer (plain strings, in display order); a task lists its own in ``Task.sources``.
SOURCES: tuple[str, ...] = tuple(s.value for s in Source)
#: Every split name, in order.
SPLITS: tuple[str, ...] = tuple(s.value for s in Split)
#: Every scenario, in the study's order (0- to 3-shot, then fine-tuned).
SCENARIOS: tuple[str, ...] = tuple(s.value for s in Scenario)


@dataclass(frozen=True)
class Example:
    """One evaluation item: the fields the prompt is built from, and the gold target."""

    id: str
    fields: dict[str, Any]
    target: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class MalformedRows:
    """Rows a loader had to drop, with the reason counts and the first offending row as an example."""

    count: int = 0
    reasons: Counter = field(default_factory=Counter)
    example: str | None = None

    def add(self, reason: str, row: object) -> None:
        self.count += 1
        self.reasons[reason] += 1
        if self.example is None:
            text = row if isinstance(row, str) else json.dumps(row, default=str, ensure_ascii=False)
            self.example = f"{reason}: {text[:300]}"

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "reasons": dict(self.reasons), "example": self.example}


@dataclass
class TaskData:
    """The loaded splits of one task from one source, with provenance."""

    task: str
    source: str
    origin: str  # dataset id, file path or generator name
    splits: dict[str, list[Example]]
    synthetic: bool = False
    revision: str | None = None
    malformed: MalformedRows = field(default_factory=MalformedRows)
    content_hash: str = ""

    def __post_init__(self) -> None:
        self.source = str(self.source)  # a Source member is stored as its plain value
        if not self.content_hash:
            self.content_hash = content_hash(self.splits)

    def split(self, name: str) -> list[Example]:
        check_choice("split", name, [s for s in SPLITS if s in self.splits])
        return self.splits[name]

    def provenance(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "source": self.source,
            "origin": self.origin,
            "revision": self.revision,
            "synthetic": self.synthetic,
            "content_sha256": self.content_hash,
            "sizes": {k: len(v) for k, v in self.splits.items()},
            "malformed": self.malformed.as_dict(),
        }


def content_hash(splits: dict[str, list[Example]]) -> str:
    """SHA-256 over the examples' ids, fields and targets, in split order: identical data, identical hash."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        for ex in splits[name]:
            digest.update(json.dumps([name, ex.id, ex.fields, ex.target], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def sample_examples(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded sample of ``limit`` examples without replacement, kept in dataset order (all when ``limit`` is None)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


def reject_options(task: str, source: str, options: Mapping[str, Any], allowed: Sequence[str] = ()) -> None:
    """Refuse options this source does not understand, naming the valid ones (``None`` values are ignored, so
    callers may pass a common set such as ``revision=None`` to every source)."""
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        valid = ", ".join(map(repr, allowed)) or "none"
        raise InvalidParameter(
            f"unknown option(s) {', '.join(map(repr, unknown))} for task {task!r} with source "
            f"{source!r}; valid options: {valid}"
        )


def require_path(path: str | Path | None, what: str, dataset: str | None = None) -> Path:
    """The release files of ``what``: ``path`` when given, else the registry's verified copy of ``dataset``
    (:func:`labscale.data.registry.locate`: ``LABSCALE_DATA``, the data cache, a mirror or the pinned download).
    A missing path, or a dataset the registry does not describe with no ``path``, fails naming the fix."""
    if path is None:
        if dataset is None:
            raise InvalidParameter(
                f"source 'local' needs the {what} release files, which the data registry does not hold (their "
                "licence or size): pass data_path=<folder with the files>"
            )
        from .data import registry

        return registry.locate(dataset)
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidParameter(f"data path {str(path)!r} for {what} does not exist")
    return path


__all__ = [
    "INVALID",
    "SCENARIOS",
    "SOURCES",
    "SPLITS",
    "Example",
    "MalformedRows",
    "Scenario",
    "Source",
    "Split",
    "TaskData",
    "content_hash",
    "reject_options",
    "require_path",
    "sample_examples",
]
