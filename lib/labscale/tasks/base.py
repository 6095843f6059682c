"""The task contract: data + prompt + parsing + metric, one place per task (HELM's scenario/adapter/metric split).

A :class:`Task` knows how to load its data from each *source* (the study's Hugging Face dataset, the original
public release files, or an offline generator), which fixed shots to use, how to turn an example into chat
messages, how to parse a model's reply strictly, and how to score a list of predictions.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, check_choice, check_range
from ..hashing import sha256_files as file_sha256  # noqa: F401  (the loaders' provenance hash)
from ..prompts import Shot, build_messages

#: The parsed outcome of a reply that does not follow the requested format. It is always scored as wrong.
INVALID = "INVALID"

#: Every data source a task may offer; a task lists the ones it supports in ``Task.sources``.
SOURCES = ("offline", "local", "hub")

SPLITS = ("train", "validation", "test")


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


class Task(ABC):
    """Base class of the study's tasks. Subclasses fill the class attributes and the abstract methods."""

    name: str
    title: str
    #: data sources this task supports, a subset of :data:`SOURCES`
    sources: tuple[str, ...] = SOURCES
    #: headline metrics in display order, e.g. ("accuracy", "f1")
    headline_metrics: tuple[str, ...] = ()
    #: generation budget; the study used 10 new tokens for classification
    max_new_tokens: int = 10
    #: system message (None: none) and instruction that opens the first user turn
    system_message: str | None = None
    instruction: str = ""
    #: how shots are laid out: "chat" (alternating turns) or "single" (one user prompt)
    shot_style: str = "chat"
    #: sentence introducing the query after single-prompt shots (None: the generic one)
    transition: str | None = None
    max_shots: int = 3

    # -- data -------------------------------------------------------------------------------------------
    def load(
        self, source: str = "offline", *, path: str | Path | None = None, seed: int = 0, **options: Any
    ) -> TaskData:
        """Load every split from ``source``; ``path`` points at release files for ``source='local'``."""
        check_choice(f"data source for task {self.name!r}", source, self.sources)
        return getattr(self, f"_load_{source}")(path=path, seed=seed, **options)

    def _load_offline(self, *, path=None, seed: int = 0, **options: Any) -> TaskData:  # pragma: no cover
        raise NotImplementedError

    def _load_local(self, *, path=None, seed: int = 0, **options: Any) -> TaskData:  # pragma: no cover
        raise NotImplementedError

    def _load_hub(self, *, path=None, seed: int = 0, **options: Any) -> TaskData:  # pragma: no cover
        raise NotImplementedError

    # -- prompts ----------------------------------------------------------------------------------------
    @abstractmethod
    def format_input(self, example: Example) -> str:
        """The user-turn text for one example (without instruction or shots)."""

    def format_target(self, example: Example) -> str:
        """The assistant-turn text for a shot (and for fine-tuning)."""
        return example.target

    def shots(self, data: TaskData, k: int) -> list[Shot]:
        """The first ``k`` of the task's fixed shots for ``data`` (the same shots for every item)."""
        check_range("shots", k, 0, self.max_shots, integer=True)
        if k == 0:
            return []
        shots = self.fixed_shots(data)
        if len(shots) < k:
            raise InvalidParameter(
                f"{k} shots need {k} fixed shots, but task {self.name!r} finds {len(shots)} in "
                f"the train split of this {data.source!r} data ({len(data.splits.get('train') or [])} "
                "items); load a larger train split"
            )
        return shots[:k]

    @abstractmethod
    def fixed_shots(self, data: TaskData) -> list[Shot]:
        """All fixed shots (at least ``max_shots``) for this data source."""

    def instruction_for(self, example: Example) -> str:
        """The instruction opening the first user turn (tasks whose wording depends on the example override it)."""
        return self.instruction

    def messages(self, example: Example, shots: Sequence[Shot], *, shot_style: str | None = None) -> list[dict]:
        """Chat messages for one example with the given shots."""
        return build_messages(
            instruction=self.instruction_for(example),
            query=self.format_input(example),
            shots=shots,
            system=self.system_message,
            style=shot_style or self.shot_style,
            transition=self.transition,
        )

    # -- parsing and scoring ----------------------------------------------------------------------------
    @abstractmethod
    def parse(self, text: str) -> str:
        """Strictly parse a reply into a label (or cleaned text); :data:`INVALID` when it does not comply."""

    def parse_for(self, example: Example, text: str) -> str:
        """Parse a reply to ``example``; tasks whose parsing needs the item (e.g. its option texts) override this."""
        return self.parse(text)

    @abstractmethod
    def score(
        self, examples: Sequence[Example], parsed: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
    ) -> dict[str, dict[str, float]]:
        """Metrics as ``{name: {"value", "ci_low", "ci_high", "n"}}``; always includes ``invalid_rate``."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "sources": list(self.sources),
            "metrics": list(self.headline_metrics),
            "max_new_tokens": self.max_new_tokens,
        }


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


def require_path(path: str | Path | None, what: str) -> Path:
    """Resolve a release-file path, defaulting to the shared data folder; a clear error if it is missing."""
    from ..config import shared_data_dir

    if path is None:
        root = shared_data_dir()
        if root is None:
            raise InvalidParameter(
                f"source 'local' needs the {what} release files: pass data_path=... or set LABSCALE_DATA"
            )
        path = root
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidParameter(f"data path {str(path)!r} for {what} does not exist")
    return path
