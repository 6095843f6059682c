"""Fine-tuning configuration: the :class:`FinetuneConfig` presets and the step arithmetic (optimizer steps, samples
and effective epochs of a run, the study's "one epoch" as its released code ran it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import InvalidParameter, check_choice, check_range, invalid_choice

#: how ``epochs`` is turned into optimizer steps; see :class:`FinetuneConfig`
STEP_SEMANTICS = ("true", "original")
#: ``FinetuneConfig.precision`` choices ("auto": see the field)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: the base model of the ``"companion"`` preset's recipe (Sam L'Huillier's Code Llama 34B text-to-SQL and ViGGO
#: fine-tunes). A preset does not choose the model: pass this (or any other model string) to :func:`finetune`.
COMPANION_BASE_MODEL = "hf:codellama/CodeLlama-34b-hf"


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
        The same recipe scaled for a 2-core CPU and a 135M model: LoRA on the unquantized base (``load_in_4bit=True``
        works on CPU through bitsandbytes, slower), r=8, alpha=16, batch 4 x accumulation 1, max length 384,
        ``adamw_torch``, lr 1e-3, loss on the completion only, no gradient checkpointing; bf16 autocast with fp32
        master weights where the CPU computes bf16 natively (``precision="auto"``), fp32 elsewhere.
    ``"companion"``
        A well-known GPU LoRA recipe: Sam L'Huillier's Code Llama 34B fine-tunes for text-to-SQL and ViGGO
        (``samlhuillier/spider-sql-finetune``, ``samlhuillier/viggo-finetune``; write-up
        https://ragntune.com/blog/gpt3.5-vs-llama2-finetuning), run on its base model
        :data:`COMPANION_BASE_MODEL` (``codellama/CodeLlama-34b-hf``, passed by the caller). LoRA r=8, alpha=16,
        dropout 0.05 on ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj``, lr 3e-4, 100 warmup steps, per-device
        batch 8 x gradient accumulation 16 (128 per step), max length 512, ``adamw_torch``, **400 optimizer
        steps** (``max_steps``), a checkpoint every 20 steps and loss on the whole sequence. The model is loaded
        in 8-bit (``load_in_8bit=True``: LLM.int8 through bitsandbytes, CUDA only; a CPU run is refused) with
        ``prepare_model_for_kbit_training`` and gradient checkpointing (``gradient_checkpointing=None``: on with
        the 8-bit model). Precision: the original trained in fp16; labscale uses bf16 on a GPU that supports it
        (fp16 otherwise), as for every preset.

    Epochs and steps (``step_semantics``):

    ``"true"`` (default)
        ``epochs`` passes over the (used) training examples: ``ceil(epochs * updates_per_epoch)`` optimizer steps,
        the Trainer's own arithmetic.
    ``"original"``
        The released code's arithmetic: ``max_steps = epochs * n_examples``, as if one step were one example.
        With batch 1 x accumulation 4 every step consumes 4 examples, so the study's "one epoch" on entity
        resolution (700 examples -> 700 steps -> 2,800 samples) and fact-checking (4,298 -> 17,192) was **4.0
        effective epochs**; summarization and GPT-3.5 used ``num_train_epochs=1`` and really made one pass.

    ``max_steps`` (None by default), when set, is the number of optimizer steps whatever ``epochs`` and
    ``step_semantics`` say (the Trainer's own ``max_steps``); :func:`plan_steps` still records samples and effective
    epochs. The companion preset's 400 steps x 128 = 51,200 sequences are about 10 epochs over ViGGO's 5,103
    training rows and about 13 over the companion's 3,961 SQL rows.

    ``effective_epochs`` (samples seen / examples used) is computed by :func:`plan_steps` and recorded either way,
    with the Trainer's epoch boundaries (the last optimizer step of an epoch takes only the leftover examples:
    4,298 fact-checking examples at 4 per step give 17,186 samples in 4,298 steps, 3.9986 epochs, against the
    nominal 4,298 x 4 = 17,192 = 4.0 also recorded as ``nominal_epochs``).

    Quantization: ``load_in_4bit`` loads the base in 4-bit NF4 (QLoRA); ``load_in_8bit`` loads it in 8-bit
    (LLM.int8, bitsandbytes) on a CUDA GPU only, never together with 4-bit. Either one runs peft's
    ``prepare_model_for_kbit_training``, and ``gradient_checkpointing=None`` turns checkpointing on with either.

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
    #: optimizer steps of the run whatever ``epochs`` says (None: from ``epochs`` and ``step_semantics``)
    max_steps: int | None = None
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: None: 4-bit NF4 on CUDA only (never with ``load_in_8bit``)
    load_in_4bit: bool | None = False
    #: 8-bit LLM.int8 weights through bitsandbytes; needs a CUDA GPU
    load_in_8bit: bool = False
    #: None: on exactly when the model is loaded in 4 or 8 bits
    gradient_checkpointing: bool | None = False
    completion_only_loss: bool = True
    seed: int = 42
    save_steps: int = 50
    logging_steps: int = 1
    train_fraction: float = 1.0
    checkpoint_every_samples: int | None = None
    #: adapt only the top N decoder layers (None: all, as in the study); backpropagation then stops below them
    top_layers: int | None = None
    #: mixed precision of training ("auto": bf16 on a CUDA GPU that has it, else fp16; on a CPU, bf16 autocast where
    #: the CPU computes bf16 natively and the base is not quantized, else fp32), or "fp32", "bf16", "fp16"
    precision: str = "auto"
    preset_name: str | None = None

    PRESETS = ("paper", "cpu", "companion")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FinetuneConfig:
        """The named preset (``"paper"``, ``"cpu"`` or ``"companion"``) with ``overrides`` applied, validated."""
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
            "companion": dict(
                r=8,
                alpha=16,
                dropout=0.05,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                learning_rate=3e-4,
                warmup_steps=100,
                per_device_batch_size=8,
                grad_accumulation=16,
                max_length=512,
                max_steps=400,
                optim="adamw_torch",
                load_in_4bit=False,
                load_in_8bit=True,
                gradient_checkpointing=None,
                completion_only_loss=False,
                save_steps=20,
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
        if self.max_steps is not None:
            check_range("max_steps", self.max_steps, 1, None, integer=True)
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames

        check_choice("optim", self.optim, [o.value for o in OptimizerNames])
        check_choice("lr_scheduler", self.lr_scheduler, [s.value for s in SchedulerType])
        for name in ("load_in_4bit", "gradient_checkpointing"):
            if getattr(self, name) not in (None, True, False):
                raise InvalidParameter(f"{name} must be True, False or None (automatic), got {getattr(self, name)!r}")
        if not isinstance(self.load_in_8bit, bool):
            raise InvalidParameter(f"load_in_8bit must be True or False, got {self.load_in_8bit!r}")
        if self.load_in_8bit and self.load_in_4bit:
            raise InvalidParameter(
                f"load_in_8bit={self.load_in_8bit} cannot be combined with load_in_4bit={self.load_in_4bit}; "
                "choose one quantization (set the other to False)"
            )
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
        check_choice("precision", self.precision, PRECISIONS)
        if self.checkpoint_every_samples is not None:
            check_range("checkpoint_every_samples", self.checkpoint_every_samples, 1, None, integer=True)
            if self.checkpoint_every_samples % self.effective_batch:
                raise InvalidParameter(
                    f"checkpoint_every_samples={self.checkpoint_every_samples} is not a multiple of the effective "
                    f"batch {self.per_device_batch_size} x {self.grad_accumulation} = {self.effective_batch}; "
                    f"valid values: multiples of {self.effective_batch}"
                )
        return self

    def resolved(
        self, device: str, *, load_in_4bit: bool | None = None, cpu_bf16: bool | None = None
    ) -> dict[str, Any]:
        """The settings actually used on ``device`` ("cuda" or "cpu"): the automatic fields filled in.
        ``load_in_4bit`` (from the model string) decides the automatic 4-bit setting when given; ``cpu_bf16``
        whether this CPU computes bf16 natively (None: read from the processor's flags). 8-bit loading or fp16 on
        ``"cpu"`` raises :class:`~labscale.errors.InvalidParameter` (they need a CUDA GPU)."""
        check_choice("device", device, ("cuda", "cpu"))
        if self.precision == "fp16" and device != "cuda":
            raise InvalidParameter(
                f"precision='fp16' needs a CUDA GPU, and this run is on {device}; valid here: 'auto', 'fp32', 'bf16'"
            )
        eight_bit = bool(self.load_in_8bit)
        if eight_bit and device != "cuda":
            raise InvalidParameter(
                f"load_in_8bit=True: 8-bit (LLM.int8, bitsandbytes) loading needs a CUDA GPU, and this run is on "
                f"{device}; use the 'cpu' preset (FinetuneConfig.preset('cpu')) or load_in_8bit=False"
            )
        if self.load_in_4bit is not None:
            four_bit = bool(self.load_in_4bit)
        elif eight_bit:
            four_bit = False
        else:
            four_bit = (device == "cuda") if load_in_4bit is None else bool(load_in_4bit)
        quantized = four_bit or eight_bit
        checkpointing = quantized if self.gradient_checkpointing is None else bool(self.gradient_checkpointing)
        precision = self.precision
        if precision == "auto" and device == "cuda":
            import torch

            try:
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            except (AssertionError, RuntimeError):  # no CUDA here: what a bf16-capable GPU would use
                precision = "bf16"
        elif precision == "auto":  # bf16 autocast: measured 1.5x faster a step on ViGGO, losses within 1 %
            if cpu_bf16 is None:
                from ..backends.precision import cpu_supports_bf16

                cpu_bf16 = cpu_supports_bf16()
            precision = "bf16" if cpu_bf16 and not quantized else "fp32"
        return {
            "device": device,
            "load_in_4bit": four_bit,
            "load_in_8bit": eight_bit,
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
                else {"quant_type": "llm.int8", "llm_int8_threshold": 6.0}
                if eight_bit
                else None
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(data["target_modules"], tuple):
            data["target_modules"] = list(data["target_modules"])
        return data


def check_config(config: Any) -> FinetuneConfig:
    """``config`` validated, or :class:`~labscale.errors.InvalidParameter` when it is not a valid
    :class:`FinetuneConfig`: what every trainer checks before anything loads."""
    if not isinstance(config, FinetuneConfig):
        raise InvalidParameter(
            f"config must be a FinetuneConfig (e.g. FinetuneConfig.preset('cpu')), got {type(config).__name__}"
        )
    return config.validate()


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
    """Optimizer steps and effective epochs for ``n_examples`` training examples under ``config`` (``config.max_steps``
    steps when set, whatever ``epochs`` says).

    >>> paper = FinetuneConfig.preset("paper", step_semantics="original")
    >>> plan_steps(700, paper).effective_epochs     # the original entity-resolution run
    4.0
    """
    check_range("number of training examples", n_examples, 1, None, integer=True)
    b, a = config.per_device_batch_size, config.grad_accumulation
    per_epoch = updates_per_epoch(n_examples, b, a)
    if config.max_steps is not None:  # the Trainer's max_steps: epochs and step_semantics do not count
        steps = config.max_steps
    elif config.step_semantics == "true":
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


def check_train_size(n: int, config: FinetuneConfig, what: str) -> None:
    """Refuse a training set smaller than one optimizer step's batch (``what`` says which set, for the message)."""
    if n < 1 or n < config.effective_batch:
        raise InvalidParameter(
            f"{what}: {n} training example(s), fewer than one optimizer step's batch "
            f"({config.per_device_batch_size} x {config.grad_accumulation} = {config.effective_batch}); raise "
            f"train_fraction, lower the batch size or raise max_length"
        )
