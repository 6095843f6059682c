"""LoRA / QLoRA fine-tuning of a local Hugging Face model on one task's train split (the study's "fine-tuned" regime).

The training loop is trl's :class:`~trl.SFTTrainer` with a peft :class:`~peft.LoraConfig`, as in the study; nothing
here re-implements optimisation. What this module adds is the bookkeeping the original scripts got wrong:

* **The prompt trained on is the prompt evaluated on.** Every train example becomes a prompt/completion pair whose
  prompt is the task's zero-shot messages rendered by :meth:`labscale.backends.hf.HFBackend.prompt_text` (chat
  template, or the plain ``User:/Assistant:`` fallback) and tokenized exactly as the backend tokenizes it for
  generation, so train and test prompts are token-for-token identical. (The original fact-checking OpenAI data
  had no instruction, abstention trained and evaluated with different instructions, and Falcon's ChatML was
  rewritten only at evaluation time.)
* **The completion ends with the tokenizer's EOS token**, so the tuned model learns to stop after its answer.
* **No truncation.** An example whose prompt + completion exceeds ``max_length`` is dropped and counted, never cut:
  trl's ``keep_start`` truncation (and the original ``max_seq_length``) can silently cut away the answer.
* **Epochs mean epochs.** ``epochs=1`` is one pass over the training examples. The original entity-resolution and
  fact-checking scripts set ``max_steps`` to the number of training examples with batch 1 x gradient accumulation
  4; a Trainer "step" is one *optimizer* step (4 examples), so those runs made about **4 passes**, not the one
  epoch the paper reports. ``step_semantics="original"`` reproduces that arithmetic on purpose; either way the
  effective number of epochs is computed and recorded (:func:`plan_steps`).
* **Loss on the answer only** (``completion_only_loss=True``, trl's prompt-completion masking) is the default of
  the ``"cpu"`` preset; the ``"paper"`` preset keeps the original whole-sequence loss.
* Checkpoints (``output_dir/checkpoints``) let an interrupted run resume to the same weights; the final adapter
  (``output_dir/adapter``) carries a machine-readable card (``labscale_card.json``) and a README model card.

Evaluate a tuned adapter through the ordinary backend: ``load_backend(f"smollm2-135m?adapter={adapter_dir}")``
(call :func:`check_adapter` first to refuse an adapter made for another base model).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InvalidParameter, check_choice, check_range, invalid_choice
from .records import git_commit, hardware, package_versions, write_json

log = logging.getLogger(__name__)

#: how ``epochs`` is turned into optimizer steps; see :class:`FinetuneConfig`
STEP_SEMANTICS = ("true", "original")

#: the adapter folder's machine-readable card
CARD_FILE = "labscale_card.json"
#: written next to the checkpoints: what was asked, to refuse resuming a different run
REQUEST_FILE = "finetune_request.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    """Hyperparameters of one LoRA/QLoRA fine-tune. Build one with :meth:`preset` and override fields.

    Presets:

    ``"paper"``
        The study's recipe (paper Section 5 and the released ``finetune_*.py``): LoRA r=32, alpha=32, dropout
        0.05 on every linear layer except the output head (peft ``target_modules="all-linear"`` excludes the
        model's output embedding, exactly the original's "all ``Linear4bit`` but ``lm_head``"), lr 2e-4, 10
        warmup steps, per-device batch 1 x gradient accumulation 4, max length 1024, ``paged_adamw_8bit``, loss on
        the whole sequence (the original ``DataCollatorForLanguageModeling``), and **one true epoch**. On CUDA it
        loads the model in 4-bit NF4 with double quantization and bf16 compute, runs
        ``prepare_model_for_kbit_training`` and gradient checkpointing (``load_in_4bit=None`` and
        ``gradient_checkpointing=None`` mean "on CUDA" and "with 4-bit"); on a CPU those two stay off.
    ``"cpu"``
        The same recipe scaled for a 2-core CPU and a 135M model: full-precision LoRA (``load_in_4bit=True`` works
        on CPU through bitsandbytes, slower), r=8, alpha=16, batch 4 x accumulation 1, max length 384,
        ``adamw_torch``, lr 1e-3, loss on the completion only, no gradient checkpointing.

    Epochs and steps (``step_semantics``):

    ``"true"`` (default)
        ``epochs`` passes over the (used) training examples: ``ceil(epochs * updates_per_epoch)`` optimizer steps,
        the Trainer's own arithmetic.
    ``"original"``
        The released code's arithmetic: ``max_steps = epochs * n_examples``, as if one step were one example.
        With batch 1 x accumulation 4 every step consumes 4 examples, so the study's "one epoch" on entity
        resolution (700 examples -> 700 steps -> 2,800 samples) and fact-checking (4,298 -> 17,192) was **4.0
        effective epochs**; summarization and GPT-3.5 used ``num_train_epochs=1`` and really made one pass.

    ``effective_epochs`` (samples seen / examples used) is computed by :func:`plan_steps` and recorded either way,
    with the Trainer's epoch boundaries (the last optimizer step of an epoch takes only the leftover examples:
    4,298 fact-checking examples at 4 per step give 17,186 samples in 4,298 steps, 3.9986 epochs, against the
    nominal 4,298 x 4 = 17,192 = 4.0 also recorded as ``nominal_epochs``).

    Other fields: ``train_fraction`` (0 < f <= 1) trains on a seeded subset of the train split (subsets are
    nested: 20 % is contained in 40 % for the same seed), for data-size sweeps; ``checkpoint_every_samples``
    keeps a checkpoint every N training samples (the study's fact-checking sweep used 500) that
    :func:`list_checkpoints` lists for evaluation; ``save_steps`` sets the resume-checkpoint cadence otherwise.
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    lr_scheduler: str = "linear"
    per_device_batch_size: int = 4
    grad_accumulation: int = 1
    max_length: int = 384
    epochs: float = 1.0
    step_semantics: str = "true"
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: None: 4-bit NF4 on CUDA only
    load_in_4bit: bool | None = False
    #: None: on exactly when the model is loaded in 4 bits
    gradient_checkpointing: bool | None = False
    completion_only_loss: bool = True
    seed: int = 42
    save_steps: int = 50
    logging_steps: int = 1
    train_fraction: float = 1.0
    checkpoint_every_samples: int | None = None
    #: adapt only the top N decoder layers (None: all, as in the study); backpropagation then stops below them
    top_layers: int | None = None
    preset_name: str | None = None

    PRESETS = ("paper", "cpu")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FinetuneConfig:
        """The named preset (``"paper"`` or ``"cpu"``) with ``overrides`` applied, validated."""
        if name not in cls.PRESETS:
            raise invalid_choice("fine-tuning preset", name, cls.PRESETS)
        base: dict[str, Any] = {
            "paper": dict(
                r=32,
                alpha=32,
                dropout=0.05,
                target_modules="all-linear",
                learning_rate=2e-4,
                warmup_steps=10,
                per_device_batch_size=1,
                grad_accumulation=4,
                max_length=1024,
                epochs=1.0,
                optim="paged_adamw_8bit",
                load_in_4bit=None,
                gradient_checkpointing=None,
                completion_only_loss=False,
                save_steps=500,
            ),
            "cpu": dict(
                r=8,
                alpha=16,
                dropout=0.05,
                target_modules="all-linear",
                learning_rate=1e-3,
                warmup_steps=10,
                per_device_batch_size=4,
                grad_accumulation=1,
                max_length=384,
                epochs=1.0,
                optim="adamw_torch",
                load_in_4bit=False,
                gradient_checkpointing=False,
                completion_only_loss=True,
                save_steps=50,
            ),
        }[name]
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InvalidParameter(
                f"unknown fine-tuning option(s) {', '.join(map(repr, unknown))}; valid options: "
                f"{', '.join(sorted(names - {'preset_name'}))}"
            )
        config = cls(**{**base, **overrides, "preset_name": name})
        config.validate()
        return config

    @property
    def effective_batch(self) -> int:
        """Examples per optimizer step (per-device batch x gradient accumulation, one device)."""
        return self.per_device_batch_size * self.grad_accumulation

    def validate(self) -> FinetuneConfig:
        """Raise :class:`~labscale.errors.InvalidParameter` (naming the value and the valid range) for any
        impossible hyperparameter. Called by :func:`finetune` before anything loads."""
        check_range("LoRA rank r", self.r, 1, None, integer=True)
        _check_positive("LoRA alpha", self.alpha)
        _check_half_open("LoRA dropout", self.dropout, 0.0, 1.0)
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("epochs", self.epochs)
        check_range("per_device_batch_size", self.per_device_batch_size, 1, None, integer=True)
        check_range("grad_accumulation", self.grad_accumulation, 1, None, integer=True)
        check_range("max_length", self.max_length, 16, None, integer=True)
        check_range("warmup_steps", self.warmup_steps, 0, None, integer=True)
        check_range("save_steps", self.save_steps, 1, None, integer=True)
        check_range("logging_steps", self.logging_steps, 1, None, integer=True)
        check_range("seed", self.seed, 0, None, integer=True)
        check_range("weight_decay", self.weight_decay, 0, None)
        check_range("max_grad_norm", self.max_grad_norm, 0, None)
        if (
            isinstance(self.train_fraction, bool)
            or not isinstance(self.train_fraction, (int, float))
            or not 0 < self.train_fraction <= 1
        ):
            raise InvalidParameter(f"train_fraction={self.train_fraction!r} is out of range; valid range: (0, 1]")
        check_choice("step_semantics", self.step_semantics, STEP_SEMANTICS)
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames

        check_choice("optim", self.optim, [o.value for o in OptimizerNames])
        check_choice("lr_scheduler", self.lr_scheduler, [s.value for s in SchedulerType])
        for name in ("load_in_4bit", "gradient_checkpointing"):
            if getattr(self, name) not in (None, True, False):
                raise InvalidParameter(f"{name} must be True, False or None (automatic), got {getattr(self, name)!r}")
        if not isinstance(self.completion_only_loss, bool):
            raise InvalidParameter(f"completion_only_loss must be True or False, got {self.completion_only_loss!r}")
        if not (
            self.target_modules == "all-linear"
            or (
                isinstance(self.target_modules, (list, tuple))
                and self.target_modules
                and all(isinstance(m, str) and m for m in self.target_modules)
            )
        ):
            raise InvalidParameter(
                f"target_modules must be 'all-linear' or a non-empty list of module names, got {self.target_modules!r}"
            )
        if isinstance(self.target_modules, (list, tuple)) and "lm_head" in self.target_modules:
            raise InvalidParameter(
                "target_modules must not contain 'lm_head' (the study adapted every linear "
                "layer except the output head; trl cannot train an adapter on it)"
            )
        if self.top_layers is not None:
            check_range("top_layers", self.top_layers, 1, None, integer=True)
        if self.checkpoint_every_samples is not None:
            check_range("checkpoint_every_samples", self.checkpoint_every_samples, 1, None, integer=True)
            if self.checkpoint_every_samples % self.effective_batch:
                raise InvalidParameter(
                    f"checkpoint_every_samples={self.checkpoint_every_samples} is not a multiple of the effective "
                    f"batch {self.per_device_batch_size} x {self.grad_accumulation} = {self.effective_batch}; "
                    f"valid values: multiples of {self.effective_batch}"
                )
        return self

    def resolved(self, device: str, *, load_in_4bit: bool | None = None) -> dict[str, Any]:
        """The settings actually used on ``device`` ("cuda" or "cpu"): the automatic fields filled in.
        ``load_in_4bit`` (from the model string) decides the automatic 4-bit setting when given."""
        check_choice("device", device, ("cuda", "cpu"))
        if self.load_in_4bit is not None:
            four_bit = bool(self.load_in_4bit)
        else:
            four_bit = (device == "cuda") if load_in_4bit is None else bool(load_in_4bit)
        checkpointing = four_bit if self.gradient_checkpointing is None else bool(self.gradient_checkpointing)
        precision = "fp32"
        if device == "cuda":
            import torch

            try:
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            except (AssertionError, RuntimeError):  # no CUDA here: what a bf16-capable GPU would use
                precision = "bf16"
        return {
            "device": device,
            "load_in_4bit": four_bit,
            "gradient_checkpointing": checkpointing,
            "precision": precision,
            "optim": self.optim,
            "quantization": (
                {
                    "quant_type": "nf4",
                    "double_quant": True,
                    "compute_dtype": "bfloat16" if device == "cuda" else "float32",
                }
                if four_bit
                else None
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(data["target_modules"], tuple):
            data["target_modules"] = list(data["target_modules"])
        return data


def _check_positive(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise InvalidParameter(f"{what}={value!r} is out of range; valid range: (0, inf)")


def _check_half_open(what: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise InvalidParameter(f"{what}={value!r} is out of range; valid range: [{low:g}, {high:g})")


# ---------------------------------------------------------------------------------------------------------------
# Step arithmetic
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run makes and how many passes over the data that is."""

    n_examples: int
    per_device_batch_size: int
    grad_accumulation: int
    step_semantics: str
    optimizer_steps: int
    updates_per_epoch: int
    samples: int  # examples actually consumed, epoch boundaries included (the Trainer's loop)
    effective_epochs: float  # samples / n_examples
    nominal_samples: int  # optimizer_steps x effective batch (ignores short last steps of an epoch)
    nominal_epochs: float  # nominal_samples / n_examples

    def samples_at(self, step: int) -> int:
        """Training samples consumed after ``step`` optimizer steps."""
        return samples_for_steps(self.n_examples, self.per_device_batch_size, self.grad_accumulation, step)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def updates_per_epoch(n_examples: int, batch: int, accumulation: int) -> int:
    """Optimizer steps in one pass, as the Trainer counts them: the last step of an epoch may use fewer batches."""
    batches = math.ceil(n_examples / batch)
    return max(math.ceil(batches / accumulation), 1)


def samples_for_steps(n_examples: int, batch: int, accumulation: int, steps: int) -> int:
    """Samples consumed by ``steps`` optimizer steps (whole epochs, then full batches of the next one)."""
    per_epoch = updates_per_epoch(n_examples, batch, accumulation)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n_examples + min(n_examples, rest * accumulation * batch)


def plan_steps(n_examples: int, config: FinetuneConfig) -> StepPlan:
    """Optimizer steps and effective epochs for ``n_examples`` training examples under ``config``.

    >>> paper = FinetuneConfig.preset("paper", step_semantics="original")
    >>> plan_steps(700, paper).effective_epochs     # the original entity-resolution run
    4.0
    """
    check_range("number of training examples", n_examples, 1, None, integer=True)
    b, a = config.per_device_batch_size, config.grad_accumulation
    per_epoch = updates_per_epoch(n_examples, b, a)
    if config.step_semantics == "true":
        steps = math.ceil(config.epochs * per_epoch - 1e-9)
    else:  # "original": max_steps = examples x epochs, as if one step were one example
        steps = math.ceil(config.epochs * n_examples - 1e-9)
    steps = max(steps, 1)
    samples = samples_for_steps(n_examples, b, a, steps)
    return StepPlan(
        n_examples=n_examples,
        per_device_batch_size=b,
        grad_accumulation=a,
        step_semantics=config.step_semantics,
        optimizer_steps=steps,
        updates_per_epoch=per_epoch,
        samples=samples,
        effective_epochs=round(samples / n_examples, 6),
        nominal_samples=steps * b * a,
        nominal_epochs=round(steps * b * a / n_examples, 6),
    )


#: the study's training-set sizes (study.md §4) and how its released code set the length of training
STUDY_TRAINING = {
    "entity_resolution": (700, "original"),
    "fact_checking": (4298, "original"),
    "summarization": (1201, "true"),
}


def study_epochs_table() -> pd.DataFrame:
    """The study's "one epoch" as its released code ran it (``max_steps = n_examples`` for entity resolution and
    fact-checking; ``num_train_epochs=1`` for summarization) beside one true epoch, under the paper preset."""
    rows = []
    for task, (n, semantics) in STUDY_TRAINING.items():
        original = plan_steps(n, FinetuneConfig.preset("paper", step_semantics=semantics))
        true = plan_steps(n, FinetuneConfig.preset("paper"))
        rows.append(
            {
                "task": task,
                "training examples": n,
                "original code: setting": "max_steps = examples" if semantics == "original" else "num_train_epochs = 1",
                "original code: optimizer steps": original.optimizer_steps,
                "original code: samples seen": original.samples,
                "original code: epochs": original.effective_epochs,
                "one true epoch: optimizer steps": true.optimizer_steps,
                "one true epoch: samples seen": true.samples,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Training data
# ---------------------------------------------------------------------------------------------------------------


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


def check_train_size(n: int, config: FinetuneConfig, what: str) -> None:
    """Refuse a training set smaller than one optimizer step's batch (``what`` says which set, for the message)."""
    if n < 1 or n < config.effective_batch:
        raise InvalidParameter(
            f"{what}: {n} training example(s), fewer than one optimizer step's batch "
            f"({config.per_device_batch_size} x {config.grad_accumulation} = {config.effective_batch}); raise "
            f"train_fraction, lower the batch size or raise max_length"
        )


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
    tokenizer = backend.tokenizer
    templated = backend.chat_template != "none" and bool(getattr(tokenizer, "chat_template", None))
    return list(tokenizer(prompt, add_special_tokens=not templated)["input_ids"])


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


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class AdapterResult:
    """What :func:`finetune` produced."""

    adapter_dir: Path
    model_card: dict[str, Any]
    train_loss: list[dict[str, float]]  # one entry per logged step: step, loss, learning_rate, epoch
    wall_seconds: float
    train_tokens: int  # non-padding tokens processed (all passes)
    optimizer_steps: int
    effective_epochs: float
    peak_memory_mb: float
    dropped_examples: int
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    #: True when an identical earlier fine-tune's adapter was returned without training
    reused: bool = False

    @property
    def losses(self) -> list[float]:
        return [row["loss"] for row in self.train_loss]

    @classmethod
    def from_card(cls, adapter_dir: str | Path, *, reused: bool = False) -> AdapterResult:
        """The result of a finished fine-tune, read back from its adapter folder's card."""
        adapter_dir = Path(adapter_dir)
        card = json.loads((adapter_dir / CARD_FILE).read_text())
        return cls(
            adapter_dir=adapter_dir,
            model_card=card,
            train_loss=card["train_loss"]["history"],
            wall_seconds=card["wall_seconds"],
            train_tokens=card["train_tokens"],
            optimizer_steps=card["steps"]["global_step"],
            effective_epochs=card["steps"]["effective_epochs"],
            peak_memory_mb=card["peak_memory_mb"],
            dropped_examples=card["data"]["dropped_too_long"],
            checkpoints=card.get("checkpoints", []),
            reused=reused,
        )


def _resolve_base(base_model: str):
    """The parsed spec of a base model for fine-tuning; only local HF models qualify."""
    from .backends import parse_model_spec

    spec = parse_model_spec(base_model)
    if spec.backend != "hf":
        raise InvalidParameter(
            f"{base_model!r} is an API model; labscale fine-tunes only local Hugging Face models. Fine-tune OpenAI "
            "models with the OpenAI fine-tuning API (client.fine_tuning.jobs.create(..., hyperparameters="
            "{'n_epochs': 1}), the study's path for GPT-3.5-Turbo) and evaluate the resulting 'ft:...' model "
            "through the openai backend"
        )
    if spec.options.get("adapter"):
        raise InvalidParameter(
            f"base model {base_model!r} already carries an adapter; merge it first "
            "(merge_adapter) and fine-tune the merged model"
        )
    return spec


def _request_fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` that has its trainer state (a checkpoint cut short while saving is skipped)."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(suffix), path))
    return max(found)[1] if found else None


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def finetune(
    base_model: str,
    task: str,
    *,
    source: str = "offline",
    data_path: str | Path | None = None,
    data_seed: int = 0,
    config: FinetuneConfig,
    output_dir: str | Path,
    resume: bool = True,
    task_options: dict[str, Any] | None = None,
    callbacks: Iterable | None = None,
    progress: bool = False,
) -> AdapterResult:
    """Fine-tune ``base_model`` (a labscale model string, e.g. ``"smollm2-135m"`` or ``"hf:<id>@<rev>"``) on the
    train split of ``task`` from ``source`` with a LoRA adapter; returns an :class:`AdapterResult`.

    Writes ``output_dir/checkpoints/checkpoint-<step>`` every ``config.save_steps`` optimizer steps (or every
    ``config.checkpoint_every_samples`` samples) and the final adapter, tokenizer and model card to
    ``output_dir/adapter``. With ``resume=True`` a run that finds a checkpoint of the *same* request continues
    from it (optimizer, scheduler, RNG and data order restored by the Trainer); a checkpoint of a different
    request raises :class:`~labscale.errors.InvalidParameter`, and a *finished* identical request returns its
    adapter without training (``AdapterResult.reused``). ``resume=False`` discards old checkpoints and retrains. (The
    Trainer is given the newest *complete* checkpoint folder, which is what ``resume_from_checkpoint=True`` picks
    except that a checkpoint cut short while being written is skipped.)
    ``callbacks`` are extra :class:`transformers.TrainerCallback` objects.
    """
    started = time.perf_counter()
    if not isinstance(config, FinetuneConfig):
        raise InvalidParameter(
            f"config must be a FinetuneConfig (e.g. FinetuneConfig.preset('cpu')), got {type(config).__name__}"
        )
    config.validate()
    spec = _resolve_base(base_model)
    from .tasks import get_task

    task_obj = get_task(task)
    data = task_obj.load(source, path=data_path, seed=data_seed, **(task_options or {}))
    train_split = data.split("train")
    check_train_size(
        math.floor(config.train_fraction * len(train_split) + 1e-9),
        config,
        f"train_fraction={config.train_fraction} of {len(train_split)}",
    )

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.options.get("device") == "cpu":
        device = "cpu"
    asked = spec.options.get("load_in_4bit")
    if asked is not None and config.load_in_4bit is not None and asked != config.load_in_4bit:
        raise InvalidParameter(
            f"the model string {base_model!r} asks for load_in_4bit={asked} but the fine-tuning config says "
            f"load_in_4bit={config.load_in_4bit}; set it in one place (FinetuneConfig.load_in_4bit)"
        )
    settings = config.resolved(device, load_in_4bit=asked)

    from .backends.hf import HFBackend

    spec = dataclasses.replace(spec, options={**spec.options, "load_in_4bit": settings["load_in_4bit"]})
    backend = HFBackend.from_spec(spec)
    backend.load()
    tset = build_training_set(task_obj, data, backend, config)
    plan = plan_steps(len(tset), config)

    output_dir = Path(output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    request = {
        "base_model": {"spec": base_model, **{k: v for k, v in backend.identity().items() if k != "adapter"}},
        "task": task,
        "source": source,
        "data_path": str(data_path) if data_path else None,
        "data_seed": data_seed,
        "task_options": task_options or {},
        "data_sha256": data.content_hash,
        "train_ids_sha256": tset.ids_sha256(),
        "config": config.as_dict(),
        "resolved": settings,
        "plan": plan.as_dict(),
    }
    request["fingerprint"] = _request_fingerprint(request)
    finished = output_dir / "adapter" / CARD_FILE
    if (
        resume
        and finished.is_file()
        and json.loads(finished.read_text()).get("request_fingerprint") == request["fingerprint"]
    ):
        backend.close()
        return AdapterResult.from_card(finished.parent, reused=True)
    resume_from = _last_complete_checkpoint(checkpoint_dir) if resume else None
    if resume_from is not None:
        previous = output_dir / REQUEST_FILE
        old = json.loads(previous.read_text()).get("fingerprint") if previous.is_file() else None
        if old != request["fingerprint"]:
            raise InvalidParameter(
                f"{checkpoint_dir} holds checkpoints of a different fine-tuning request (other model, data or "
                f"hyperparameters); use another output_dir or resume=False to start over"
            )
    elif checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / REQUEST_FILE, request)

    model = backend.model
    if settings["load_in_4bit"]:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings["gradient_checkpointing"])
    from trl import SFTConfig, SFTTrainer

    lora, layers = lora_config(config, model, base_model)
    save_steps = (
        config.checkpoint_every_samples // config.effective_batch
        if config.checkpoint_every_samples
        else config.save_steps
    )
    # transformers >= 5.2x renamed gradient_checkpointing to activation_checkpointing (the old name warns)
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    checkpointing_arg = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    args = SFTConfig(
        output_dir=str(checkpoint_dir),
        max_steps=plan.optimizer_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler,
        optim=config.optim,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=None if config.checkpoint_every_samples else 2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=settings["precision"] == "bf16",
        fp16=settings["precision"] == "fp16",
        **{checkpointing_arg: settings["gradient_checkpointing"]},
        max_length=config.max_length,
        completion_only_loss=config.completion_only_loss,
        packing=False,
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
        disable_tqdm=not progress,
        eval_strategy="no",
    )
    with _quiet_datasets(not progress):
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=tset.dataset(),
            processing_class=backend.tokenizer,
            peft_config=lora,
            callbacks=list(callbacks or []),
        )
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the history is in the card
    if len(trainer.train_dataset) != len(tset):  # pragma: no cover - our rows never exceed max_length
        raise RuntimeError("trl dropped or truncated training examples that labscale had already length-checked")
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    state = trainer.state
    history = [
        {
            "step": int(row["step"]),
            "loss": float(row["loss"]),
            "learning_rate": float(row.get("learning_rate", float("nan"))),
            "epoch": float(row.get("epoch", 0)),
        }
        for row in state.log_history
        if "loss" in row and "step" in row
    ]
    peft_model = trainer.model
    lora_cfg = peft_model.peft_config["default"]
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    checkpoints = list_checkpoints(output_dir) if config.checkpoint_every_samples else []
    wall = time.perf_counter() - started
    card = {
        "labscale_card_version": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base_model": request["base_model"],
        "request_fingerprint": request["fingerprint"],
        "task": task,
        "data": {
            **data.provenance(),
            "data_seed": data_seed,
            "task_options": task_options or {},
            "train_split_size": tset.n_split,
            "train_fraction": config.train_fraction,
            "train_selected": tset.n_selected,
            "train_used": len(tset),
            "dropped_too_long": tset.dropped,
            "dropped_ids": tset.dropped_ids[:50],
            "train_ids_sha256": tset.ids_sha256(),
        },
        "prompt": {
            "format": "zero-shot task messages rendered by HFBackend.prompt_text (identical to evaluation)",
            "chat_template": backend.chat_template != "none" and bool(backend.tokenizer.chat_template),
            "example_prompt": tset.rows[0]["prompt"],
            "example_completion": tset.rows[0]["completion"],
            "completion_suffix": backend.tokenizer.eos_token,
            "loss": "completion only" if config.completion_only_loss else "whole sequence",
        },
        "config": config.as_dict(),
        "resolved": settings,
        "lora": {
            "r": lora_cfg.r,
            "alpha": lora_cfg.lora_alpha,
            "dropout": lora_cfg.lora_dropout,
            "target_modules": sorted(lora_cfg.target_modules),
            "layers": layers or "all",
            "trainable_parameters": trainable,
            "total_parameters": total,
        },
        "steps": {**plan.as_dict(), "global_step": state.global_step, "resumed_from_step": _step_of(resume_from)},
        "train_loss": {
            "first": history[0]["loss"] if history else None,
            "last": history[-1]["loss"] if history else None,
            "mean_first5": _mean([h["loss"] for h in history[:5]]),
            "mean_last5": _mean([h["loss"] for h in history[-5:]]),
            "history": history,
        },
        "train_tokens": int(state.num_input_tokens_seen),
        "wall_seconds": round(wall, 3),
        "train_runtime_seconds": round(float(output.metrics.get("train_runtime", float("nan"))), 3),
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
        "peak_memory_kind": "torch.cuda.max_memory_allocated"
        if device == "cuda"
        else "process max RSS (getrusage high-water mark)",
        "checkpoints": checkpoints,
        "use": {"model": _use_spec(base_model, settings["load_in_4bit"])},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": _hardware(),
    }
    adapter_dir = _save_adapter(peft_model, backend, output_dir / "adapter", card)
    return AdapterResult.from_card(adapter_dir)


def lora_config(config: FinetuneConfig, model, base_model: str):
    """The peft ``LoraConfig`` of ``config`` for ``model`` and the adapted layer indices (None: all layers)."""
    from peft import LoraConfig

    layers = None
    if config.top_layers is not None:
        n_layers = model.config.num_hidden_layers
        if config.top_layers > n_layers:
            raise InvalidParameter(
                f"top_layers={config.top_layers} but {base_model!r} has {n_layers} layers; valid range: 1..{n_layers}"
            )
        layers = list(range(n_layers - config.top_layers, n_layers))
    targets = config.target_modules if config.target_modules == "all-linear" else list(config.target_modules)
    if layers is not None and targets == "all-linear":  # peft takes layers_to_transform with explicit names only
        targets = _linear_module_names(model)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return lora, layers


@contextlib.contextmanager
def _quiet_datasets(quiet: bool):
    """Silence the datasets progress bars of trl's dataset preparation (restored afterwards)."""
    from datasets.utils import logging as ds_logging

    enabled = ds_logging.is_progress_bar_enabled()
    if quiet and enabled:
        ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and enabled:
            ds_logging.enable_progress_bar()


def _use_spec(base_model: str, four_bit: bool) -> str:
    """The model string to evaluate the adapter with (``<adapter>`` to be filled in): the base as trained."""
    body, _, query = base_model.partition("?")
    options = [q for q in query.split("&") if q and not q.startswith("load_in_4bit=")]
    if four_bit:
        options.append("load_in_4bit=true")
    return body + "?" + "&".join([*options, "adapter=<adapter>"])


def _step_of(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.split("-", 1)[1]) if checkpoint is not None else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _linear_module_names(model) -> list[str]:
    """The names of every linear layer but the output head: what peft's ``"all-linear"`` selects."""
    import torch

    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }
    try:  # bitsandbytes' 4-bit layers are not torch.nn.Linear subclasses
        import bitsandbytes as bnb

        names |= {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, bnb.nn.Linear4bit) and module is not head
        }
    except ImportError:
        pass
    return sorted(names)


def _hardware() -> dict[str, Any]:
    import torch

    return {**hardware(), "torch_threads": torch.get_num_threads()}


def _save_adapter(peft_model, backend, adapter_dir: Path, card: dict[str, Any]) -> Path:
    """Adapter weights + config, tokenizer, card and README, written to a temporary folder and moved into place."""
    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=adapter_dir.parent))
    try:
        peft_model.save_pretrained(tmp)
        backend.tokenizer.save_pretrained(tmp)
        config_path = tmp / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text())
        # name the upstream model (not the local conversion folder) so the adapter says what it belongs to
        adapter_config["base_model_name_or_path"] = backend.model_id
        if not backend.embedded and backend.revision:
            adapter_config["revision"] = backend.revision
        write_json(config_path, adapter_config)
        write_json(tmp / CARD_FILE, card)
        (tmp / "README.md").write_text(render_model_card(card))
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        tmp.rename(adapter_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return adapter_dir


def finetune_tasks(
    base_model: str,
    tasks: Sequence[str],
    *,
    config: FinetuneConfig | Mapping[str, FinetuneConfig],
    output_root: str | Path = "runs/adapters",
    source: str = "offline",
    data_path: str | Path | None = None,
    data_seed: int = 0,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, AdapterResult]:
    """Fine-tune one adapter per task into ``output_root/<model>/<task>``; ``config`` is one
    :class:`FinetuneConfig` for every task or a mapping task -> config. Every task and config is validated before
    the first one trains; finished identical fine-tunes are reused. Returns task -> :class:`AdapterResult`.

    An empty ``tasks`` means no fine-tune: ``{}`` whatever ``base_model`` is (an API model included), so a chapter
    can evaluate models it cannot fine-tune."""
    from .tasks import ALL_TASK_NAMES

    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if not tasks:
        return {}
    for t in tasks:
        check_choice("task to fine-tune", t, ALL_TASK_NAMES)
    configs = dict(config) if isinstance(config, Mapping) else {t: config for t in tasks}
    for t in tasks:
        if t not in configs:
            raise InvalidParameter(f"no fine-tuning config for task {t!r}; configs given for {sorted(configs)}")
        if not isinstance(configs[t], FinetuneConfig):
            raise InvalidParameter(f"config for {t!r} must be a FinetuneConfig, got {type(configs[t]).__name__}")
        configs[t].validate()
    slug = _resolve_base(base_model).slug
    options = {t: dict(o) for t, o in (task_options or {}).items()}
    return {
        t: finetune(
            base_model,
            t,
            source=source,
            data_path=data_path,
            data_seed=data_seed,
            config=configs[t],
            output_dir=Path(output_root) / slug / t,
            task_options=options.get(t),
            progress=progress,
        )
        for t in tasks
    }


def training_summary(results: Mapping[str, AdapterResult]) -> pd.DataFrame:
    """One row per fine-tune: data used, steps, effective epochs, tokens, wall time, throughput, loss, memory."""
    rows = []
    for task, r in results.items():
        card = r.model_card
        runtime = card.get("train_runtime_seconds") or r.wall_seconds
        rows.append(
            {
                "task": task,
                "base model": card["base_model"].get("model"),
                "examples used": card["data"]["train_used"],
                "of train split": card["data"]["train_split_size"],
                "optimizer steps": r.optimizer_steps,
                "samples": card["steps"]["samples"],
                "effective epochs": r.effective_epochs,
                "train tokens": r.train_tokens,
                "train s": round(runtime, 1),
                "tokens/s": round(r.train_tokens / runtime, 1) if runtime else None,
                "loss first 5": card["train_loss"]["mean_first5"],
                "loss last 5": card["train_loss"]["mean_last5"],
                "peak memory MB": r.peak_memory_mb,
                "device": card["resolved"]["device"],
                "4-bit": card["resolved"]["load_in_4bit"],
                "reused": r.reused,
            }
        )
    return pd.DataFrame(rows)


def list_checkpoints(output_dir: str | Path) -> list[dict[str, Any]]:
    """The saved checkpoints of a fine-tune, oldest first: ``{"step", "samples", "path"}`` each (evaluate one with
    ``load_backend(f"<base>?adapter={path}")``; it holds the adapter at that point)."""
    output_dir = Path(output_dir)
    request_path = output_dir / REQUEST_FILE
    if not request_path.is_file():
        raise InvalidParameter(f"{output_dir} is not a labscale fine-tuning folder (no {REQUEST_FILE})")
    plan = json.loads(request_path.read_text())["plan"]
    rows = []
    for path in (output_dir / "checkpoints").glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit() and (path / "trainer_state.json").is_file():
            step = int(suffix)
            rows.append(
                {
                    "step": step,
                    "path": str(path),
                    "samples": samples_for_steps(
                        plan["n_examples"], plan["per_device_batch_size"], plan["grad_accumulation"], step
                    ),
                }
            )
    return sorted(rows, key=lambda r: r["step"])


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------


def _privacy_lines(privacy: dict[str, Any] | None) -> list[str]:
    """The model card's privacy section for an adapter trained by :func:`labscale.privacy.dp_finetune`."""
    if not privacy:
        return []
    return [
        "## Privacy",
        "",
        f"- {privacy['mechanism']}; target epsilon {privacy['epsilon_target']}, spent {privacy['epsilon_spent']} "
        f"at delta {privacy['delta']:.3g}; noise multiplier {privacy['noise_multiplier']:.4g}, per-example "
        f"clipping norm {privacy['max_grad_norm']}, sampling {privacy['sampling']}",
        "",
    ]


def render_model_card(card: dict[str, Any]) -> str:
    """A human-readable README.md model card rendered from the ``labscale_card.json`` dict."""
    base, data, cfg, steps, loss = card["base_model"], card["data"], card["config"], card["steps"], card["train_loss"]
    res, lora = card["resolved"], card["lora"]

    def fmt(value: Any, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    method = "QLoRA (4-bit NF4, double quantization)" if res["load_in_4bit"] else "LoRA (full-precision base)"
    lines = [
        "---",
        f"base_model: {base.get('model')}",
        "library_name: peft",
        "tags: [labscale, lora, " + card["task"] + "]",
        "---",
        "",
        f"# {card['task']} adapter for {base.get('model')}",
        "",
        f"A {method} adapter trained by `labscale.finetune` (companion to *Laboratory-Scale AI*, Wolfe et al., "
        "FAccT 2024) on the train split of the task below.",
        "",
        "## Base model",
        "",
        f"- labscale spec: `{base.get('spec')}`",
        f"- model: `{base.get('model')}`",
        f"- revision: `{base.get('revision')}`",
        "",
        "## Data",
        "",
        f"- task: `{card['task']}`; source `{data.get('source')}` ({data.get('origin')})"
        + ("; synthetic" if data.get("synthetic") else ""),
        f"- content SHA-256: `{data.get('content_sha256')}`",
        f"- train split: {data['train_split_size']} examples; fraction {data['train_fraction']:.4g} -> "
        f"{data['train_selected']} selected, {data['train_used']} used, {data['dropped_too_long']} dropped as "
        f"longer than {cfg['max_length']} tokens (never truncated)",
        f"- prompts: {card['prompt']['format']}; each completion ends with `{card['prompt']['completion_suffix']}`; "
        f"loss on the {card['prompt']['loss']}",
        "",
        "## Training",
        "",
        f"- preset: `{cfg.get('preset_name')}`; LoRA r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}"
        f" on {', '.join(lora['target_modules'])}"
        + (f" of layers {lora['layers'][0]}-{lora['layers'][-1]}" if isinstance(lora.get("layers"), list) else "")
        + f" ({lora['trainable_parameters']:,} trainable of "
        f"{lora['total_parameters']:,} parameters)",
        f"- optimizer `{res['optim']}`, lr {cfg['learning_rate']}, {cfg['lr_scheduler']} schedule, "
        f"{cfg['warmup_steps']} warmup steps, batch {cfg['per_device_batch_size']} x accumulation "
        f"{cfg['grad_accumulation']}, seed {cfg['seed']}, precision {res['precision']} on {res['device']}"
        + (", gradient checkpointing" if res["gradient_checkpointing"] else ""),
        f"- {steps['optimizer_steps']} optimizer steps = {steps['samples']} samples = "
        f"**{steps['effective_epochs']:g} effective epochs** (requested {cfg['epochs']:g}, step semantics "
        f"`{steps['step_semantics']}`"
        + (
            f"; nominally {steps['nominal_epochs']:g} = steps x batch / examples"
            if steps.get("nominal_epochs") not in (None, steps["effective_epochs"])
            else ""
        )
        + ")",
        f"- train loss: first {fmt(loss['first'])}, last {fmt(loss['last'])} (mean of first 5 "
        f"{fmt(loss['mean_first5'])}, last 5 {fmt(loss['mean_last5'])})",
        f"- {card['train_tokens']:,} training tokens; wall time {card['wall_seconds']:.1f} s; peak memory "
        f"{card['peak_memory_mb']:.0f} MB ({card['peak_memory_kind']})"
        + (f"; resumed from step {steps['resumed_from_step']}" if steps.get("resumed_from_step") else ""),
        "",
        *_privacy_lines(card.get("privacy")),
        "## Use",
        "",
        "```python",
        "from labscale.backends import load_backend",
        f'backend = load_backend("{card.get("use", {}).get("model", base.get("spec") + "?adapter=<adapter>")}")'
        "  # <adapter>: this folder",
        "```",
        "",
        "## Provenance",
        "",
        f"- git commit: `{card.get('git_commit')}`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items() if v),
        f"- hardware: {card['hardware'].get('platform')}, {card['hardware'].get('cpu_count')} CPUs"
        + (f", {card['hardware'].get('gpu')}" if card["hardware"].get("gpu") else ""),
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Using an adapter
# ---------------------------------------------------------------------------------------------------------------


def _is_local_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or Path(name).expanduser().exists()


def _same_model(a: str | None, b: str | None) -> bool:
    """Equal ids, or a local folder whose name is the other's model name (a converted or downloaded copy, e.g.
    the folder a Trainer checkpoint records); two different hub ids never match, whatever their names."""
    if not a or not b:
        return False
    a, b = str(a).rstrip("/"), str(b).rstrip("/")
    if a == b:
        return True
    return (_is_local_path(a) or _is_local_path(b)) and Path(a).name == Path(b).name


def check_adapter(adapter_dir: str | Path, base_model: str) -> dict[str, Any]:
    """Refuse an adapter that is missing or incomplete, or that was trained on another base model than
    ``base_model`` (a labscale model string); returns its card (or its adapter config when it has no card)."""
    path = Path(adapter_dir)
    if not path.is_dir():
        raise InvalidParameter(f"adapter folder {str(path)!r} does not exist")
    missing = [] if (path / "adapter_config.json").is_file() else ["adapter_config.json"]
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        missing.append(" or ".join(ADAPTER_WEIGHTS))
    if missing:
        raise InvalidParameter(f"adapter folder {str(path)!r} is incomplete: missing {', '.join(missing)}")
    from .backends import parse_model_spec
    from .backends.hf import HFBackend

    spec = parse_model_spec(base_model)
    if spec.backend != "hf":
        raise InvalidParameter(f"LoRA adapters apply to local Hugging Face models, not {base_model!r}")
    requested = HFBackend.from_spec(spec, check_available=False)  # comparing names needs no weights
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    card_path = path / CARD_FILE
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        trained = card.get("base_model", {})
        if not _same_model(trained.get("model"), requested.model_id):
            raise InvalidParameter(
                f"adapter {str(path)!r} was trained on base model {trained.get('model')!r} "
                f"(spec {trained.get('spec')!r}), not on the requested {requested.model_id!r} ({base_model!r})"
            )
        if trained.get("revision") and requested.revision and trained["revision"] != requested.revision:
            raise InvalidParameter(
                f"adapter {str(path)!r} was trained on {trained.get('model')!r} revision {trained['revision']!r}, "
                f"not on the requested revision {requested.revision!r} ({base_model!r})"
            )
        return card
    named = adapter_config.get("base_model_name_or_path")
    if named and not _same_model(named, requested.model_id):
        raise InvalidParameter(
            f"adapter {str(path)!r} names base model {named!r} in adapter_config.json, not the "
            f"requested {requested.model_id!r} ({base_model!r})"
        )
    return adapter_config


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, base_model: str | None = None) -> Path:
    """Merge a LoRA adapter into a full-precision copy of its base model (peft ``merge_and_unload``) and save it
    with the tokenizer to ``out_dir``; load it afterwards as ``hf:<out_dir>``. ``base_model`` defaults to the
    spec recorded in the adapter's card."""
    adapter_dir = Path(adapter_dir)
    card_path = adapter_dir / CARD_FILE
    if base_model is None:
        if not card_path.is_file():
            raise InvalidParameter(f"{str(adapter_dir)!r} has no {CARD_FILE}; pass base_model=...")
        base_model = json.loads(card_path.read_text())["base_model"]["spec"]
    check_adapter(adapter_dir, base_model)
    from peft import PeftModel

    from .backends import parse_model_spec
    from .backends.hf import HFBackend

    spec = parse_model_spec(base_model)
    spec = dataclasses.replace(
        spec, options={k: v for k, v in spec.options.items() if k not in ("load_in_4bit", "adapter")}
    )
    backend = HFBackend.from_spec(spec)
    merged = PeftModel.from_pretrained(backend.model, str(adapter_dir)).merge_and_unload()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    backend.tokenizer.save_pretrained(out_dir)
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        write_json(out_dir / CARD_FILE, {**card, "merged_from_adapter": str(adapter_dir)})
    return out_dir


__all__ = [
    "CARD_FILE",
    "STEP_SEMANTICS",
    "AdapterResult",
    "FinetuneConfig",
    "StepPlan",
    "TrainingSet",
    "build_training_set",
    "check_adapter",
    "check_train_size",
    "encode_prompt",
    "finetune",
    "finetune_tasks",
    "list_checkpoints",
    "merge_adapter",
    "plan_steps",
    "render_model_card",
    "samples_for_steps",
    "select_train_examples",
    "study_epochs_table",
    "training_summary",
    "updates_per_epoch",
]
