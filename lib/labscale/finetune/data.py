"""Fine-tuning data: the prompt/completion pairs of a task's train split, tokenized exactly as evaluation tokenizes
its prompts (the prompt trained on is the prompt evaluated on; the completion ends with the EOS token; an example
longer than ``max_length`` is dropped and counted, never truncated)."""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from .config import FinetuneConfig, check_train_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainData:
    """Which data a fine-tune trains on: the task, and the source, path, seed and options it is loaded with."""

    task: str
    source: str = "offline"
    data_path: str | Path | None = None
    data_seed: int = 0
    task_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> TrainData:
        """The data of a recorded fine-tuning request (:func:`~.training.training_request`)."""
        return cls(**{name: request[name] for name in ("task", "source", "data_path", "data_seed", "task_options")})

    def load(self):
        """``(task, data)``: the task object and its loaded data (every split)."""
        from ..tasks import get_task

        task = get_task(self.task)
        return task, task.load(self.source, path=self.data_path, seed=self.data_seed, **dict(self.task_options or {}))

    def request(self) -> dict[str, Any]:
        """These fields as a fine-tuning request records them."""
        return {
            "task": self.task,
            "source": self.source,
            "data_path": str(self.data_path) if self.data_path else None,
            "data_seed": self.data_seed,
            "task_options": dict(self.task_options or {}),
        }


def select_train_examples(examples: Sequence, fraction: float, seed: int) -> list:
    """A seeded subset of ``floor(fraction * n)`` examples, kept in dataset order. Subsets are nested: for one
    seed, the examples chosen at a smaller fraction are all chosen at a larger one."""
    n = len(examples)
    k = math.floor(fraction * n + 1e-9)
    if k >= n:
        return list(examples)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in sorted(order[:k])]


@dataclass
class TrainingSet:
    """The prompt/completion pairs of one fine-tune, tokenized as the evaluation backend tokenizes prompts."""

    rows: list[dict[str, Any]]  # id, prompt, completion, input_ids, completion_mask
    n_split: int  # examples in the train split
    n_selected: int  # after train_fraction
    dropped_ids: list[str]  # too long for max_length (never truncated)
    max_length: int

    @property
    def dropped(self) -> int:
        return len(self.dropped_ids)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.rows)

    def dataset(self):
        """A pre-tokenized ``datasets.Dataset`` (``input_ids`` + ``completion_mask``) for :class:`trl.SFTTrainer`,
        which turns the completion mask into labels when ``completion_only_loss=True``."""
        from datasets import Dataset

        return Dataset.from_dict(
            {
                "input_ids": [r["input_ids"] for r in self.rows],
                "completion_mask": [r["completion_mask"] for r in self.rows],
            }
        )

    def ids_sha256(self) -> str:
        return hashlib.sha256("\n".join(r["id"] for r in self.rows).encode()).hexdigest()


def encode_prompt(backend, prompt: str) -> list[int]:
    """Token ids of a rendered prompt exactly as :class:`~labscale.backends.hf.HFBackend` encodes it for
    generation (no extra special tokens when a chat template already placed them)."""
    return list(backend.tokenizer(prompt, add_special_tokens=not backend.uses_chat_template)["input_ids"])


def training_rows(task, examples: Sequence, backend, max_length: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Tokenized prompt/completion rows for ``examples`` (see :func:`build_training_set`) and the ids of those
    longer than ``max_length`` tokens, which are left out rather than truncated."""
    tokenizer = backend.tokenizer
    eos = tokenizer.eos_token
    if not eos:
        raise InvalidParameter(
            f"the tokenizer of {backend.model_id!r} has no EOS token; a tuned model could not learn to stop"
        )
    rows: list[dict[str, Any]] = []
    dropped: list[str] = []
    for ex in examples:
        prompt = backend.prompt_text(task.messages(ex, []))
        completion = task.format_target(ex) + eos
        prompt_ids = encode_prompt(backend, prompt)
        completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
        if len(prompt_ids) + len(completion_ids) > max_length:
            dropped.append(ex.id)
            continue
        rows.append(
            {
                "id": ex.id,
                "prompt": prompt,
                "completion": completion,
                "input_ids": prompt_ids + completion_ids,
                "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
            }
        )
    return rows, dropped


def build_training_set(task, data, backend, config: FinetuneConfig) -> TrainingSet:
    """Prompt/completion pairs for the train split of ``data``.

    prompt = the task's zero-shot messages rendered by ``backend.prompt_text`` (what evaluation sends);
    completion = ``task.format_target(example)`` + the tokenizer's EOS token. Pairs longer than
    ``config.max_length`` tokens are dropped and counted, never truncated.
    """
    train = data.split("train")
    selected = select_train_examples(train, config.train_fraction, config.seed)
    check_train_size(len(selected), config, f"train_fraction={config.train_fraction} of {len(train)}")
    rows, dropped = training_rows(task, selected, backend, config.max_length)
    tset = TrainingSet(
        rows=rows, n_split=len(train), n_selected=len(selected), dropped_ids=dropped, max_length=config.max_length
    )
    if dropped:
        log.warning(
            "dropped %d of %d training examples longer than max_length=%d tokens",
            len(dropped),
            len(selected),
            config.max_length,
        )
    check_train_size(
        len(rows), config, f"after dropping {len(dropped)} example(s) longer than max_length={config.max_length}"
    )
    return tset
