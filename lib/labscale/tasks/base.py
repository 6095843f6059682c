"""The task contract: data + prompt + parsing + metric, one place per task (HELM's scenario/adapter/metric split).

A :class:`Task` knows how to load its data from each *source* (the study's Hugging Face dataset, the original
public release files, or an offline generator), which fixed shots to use, how to turn an example into chat
messages, how to parse a model's reply strictly, and how to score a list of predictions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from ..core import INVALID, SOURCES, Example, Source, TaskData
from ..errors import InvalidParameter, check_choice, check_range
from ..prompts import BLOCK_SEPARATOR, Shot, build_messages

if TYPE_CHECKING:
    from ..prompt_sensitivity import PromptFormat


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
    #: the per-item scores :meth:`item_scores` returns
    item_score_names: tuple[str, ...] = ("correct", "invalid")

    # -- data -------------------------------------------------------------------------------------------
    #: the :mod:`labscale.data` module holding this task's loaders: ``load_offline``, ``load_local``, ``load_hub``
    data_module: ClassVar[ModuleType]

    def load(
        self, source: str = Source.OFFLINE, *, path: str | Path | None = None, seed: int = 0, **options: Any
    ) -> TaskData:
        """Load every split from ``source`` (a :class:`~labscale.core.Source` or its value) through the task's
        :attr:`data_module`; ``path`` points at release files for ``source='local'``."""
        check_choice(f"data source for task {self.name!r}", source, self.sources)
        options = dict(options)
        extra = self.loader_arguments(source, options)
        return getattr(self.data_module, f"load_{source}")(path, seed=seed, **extra, **options)

    def loader_arguments(self, source: str, options: dict[str, Any]) -> dict[str, Any]:
        """Extra keyword arguments for the data module's loader. Tasks with scoring options take them out of
        ``options`` here (and name them as accepted); by default there are none."""
        return {}

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

    def messages(
        self,
        example: Example,
        shots: Sequence[Shot],
        *,
        shot_style: str | None = None,
        prompt_format: PromptFormat | None = None,
    ) -> list[dict]:
        """Chat messages for one example with the given shots. A ``prompt_format``
        (:class:`~labscale.prompt_sensitivity.PromptFormat`) sets the block separator, the casing of the system
        message and instruction (never of the data), the shots' order and their label words; None is the study's."""
        instruction, system, separator = self.instruction_for(example), self.system_message, BLOCK_SEPARATOR
        if prompt_format is not None:
            shots = prompt_format.arrange(self.name, shots)
            instruction, system = prompt_format.case(instruction), prompt_format.case(system)
            separator = prompt_format.separator_text
        return build_messages(
            instruction=instruction,
            query=self.format_input(example),
            shots=shots,
            system=system,
            style=shot_style or self.shot_style,
            transition=self.transition,
            separator=separator,
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

    @staticmethod
    def check_replies(examples: Sequence[Example], parsed: Sequence[str]) -> None:
        """Refuse to score unless there is one parsed reply per example."""
        if len(examples) != len(parsed):
            raise InvalidParameter(
                f"score needs one parsed reply per example: {len(examples)} examples, {len(parsed)} replies"
            )

    def item_scores(self, examples: Sequence[Example], parsed: Sequence[str]) -> dict[str, list[float]]:
        """Per-item scores, the run record's per-instance stats (aggregates and intervals live in
        :mod:`labscale.metrics`): ``correct`` (the parsed label is the gold one) and ``invalid`` (unparseable).
        Tasks whose items are scored otherwise (summaries, extractive answers) override it."""
        pairs = list(zip(examples, parsed, strict=True))
        return {
            "correct": [float(p == ex.target) for ex, p in pairs],
            "invalid": [float(p == INVALID) for _, p in pairs],
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "sources": list(self.sources),
            "metrics": list(self.headline_metrics),
            "max_new_tokens": self.max_new_tokens,
        }
