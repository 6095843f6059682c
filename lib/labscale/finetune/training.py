"""Fine-tuning: LoRA/QLoRA training of a local Hugging Face model with trl's ``SFTTrainer`` (one adapter, or one per
task), the request a run is fingerprinted by, and resuming from checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .. import progress as progress_bars
from ..errors import InvalidParameter, check_choice
from ..records import write_json
from .adapter import (
    REQUEST_FILE,
    AdapterResult,
    build_card,
    complete_checkpoints,
    finished_adapter,
    list_checkpoints,
    lora_summary,
    save_adapter,
)
from .attempts import AttemptLog
from .config import FinetuneConfig, check_config, check_train_size, plan_steps
from .data import TrainData, TrainingSet, build_training_set
from .trunk import trainer_on_trunk


def resolve_base(base_model: str):
    """The parsed spec of a base model for fine-tuning; only local HF models without an adapter qualify."""
    from ..backends import parse_model_spec

    spec = parse_model_spec(base_model)
    if spec.backend != "hf":
        raise InvalidParameter(
            f"{base_model!r} is an API model; labscale fine-tunes only local Hugging Face models. Fine-tune OpenAI "
            "models with the OpenAI fine-tuning API (client.fine_tuning.jobs.create(..., hyperparameters="
            "{'n_epochs': 1}), the study's path for GPT-3.5-Turbo) and evaluate the resulting 'ft:...' model "
            "through the openai backend"
        )
    if spec.adapter:
        raise InvalidParameter(
            f"base model {base_model!r} already carries an adapter; merge it first "
            "(merge_adapter) and fine-tune the merged model"
        )
    return spec


def request_fingerprint(payload: Mapping[str, Any]) -> str:
    """SHA-256 of a fine-tuning request (its JSON, keys sorted): equal requests make equal adapters."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


#: settings added after adapters were first fingerprinted: left out of a request at these defaults, so an adapter
#: trained before they existed is still recognised (and reused) by an equal request
_LATER_DEFAULTS = {"max_steps": None, "load_in_8bit": False}


def _without_later_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}


def training_request(
    base_model: str, backend, where: TrainData, data, tset: TrainingSet, config: FinetuneConfig, **extra: Any
) -> dict[str, Any]:
    """What an adapter depends on: the base model as loaded (``backend``), the data (``where`` it was loaded from,
    its content hash, the ids of the training rows ``tset``), the config and ``extra`` (a trainer's own settings),
    with its ``fingerprint`` (:func:`request_fingerprint`) that a finished adapter's card records
    (:func:`~.adapter.finished_adapter`)."""
    request = {
        "base_model": {"spec": base_model, **{k: v for k, v in backend.identity().items() if k != "adapter"}},
        **where.request(),
        "data_sha256": data.content_hash,
        "train_ids_sha256": tset.ids_sha256(),
        "config": _without_later_defaults(config.as_dict()),
        **{k: _without_later_defaults(v) if k == "resolved" else v for k, v in extra.items()},
    }
    request["fingerprint"] = request_fingerprint(request)
    return request


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
    frozen_trunk: bool = True,
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

    With ``config.top_layers`` set and ``frozen_trunk=True``, the frozen layers below the adapted ones run once per
    training row before the first step, not at every step of every epoch (:func:`~.trunk.trainer_on_trunk`, checked
    against the full forward pass first); the losses agree with the full pass to rounding, so the request does not
    depend on it, and the card's ``resolved.frozen_trunk_layers`` says whether it was used.
    """
    started = time.perf_counter()
    check_config(config)
    spec = resolve_base(base_model)
    where = TrainData(task, source, data_path, data_seed, task_options or {})
    task_obj, data = where.load()
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
    if asked and config.load_in_8bit:
        raise InvalidParameter(
            f"the model string {base_model!r} asks for load_in_4bit={asked} but the fine-tuning config says "
            f"load_in_8bit={config.load_in_8bit}; choose one quantization (drop load_in_4bit from the model string "
            "or set load_in_8bit=False)"
        )
    if asked is not None and config.load_in_4bit is not None and asked != config.load_in_4bit:
        raise InvalidParameter(
            f"the model string {base_model!r} asks for load_in_4bit={asked} but the fine-tuning config says "
            f"load_in_4bit={config.load_in_4bit}; set it in one place (FinetuneConfig.load_in_4bit)"
        )
    settings = config.resolved(device, load_in_4bit=asked)  # 8-bit without CUDA fails here, before any load

    from ..backends.hf import HFBackend

    quantized = {"load_in_4bit": settings["load_in_4bit"]}
    if settings["load_in_8bit"]:
        quantized["load_in_8bit"] = True
    spec = dataclasses.replace(spec, options={**spec.options, **quantized})
    backend = HFBackend.from_spec(spec)
    backend.load()
    tset = build_training_set(task_obj, data, backend, config)
    plan = plan_steps(len(tset), config)

    output_dir = Path(output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    request = training_request(base_model, backend, where, data, tset, config, resolved=settings, plan=plan.as_dict())
    done = finished_adapter(output_dir, request["fingerprint"]) if resume else None
    if done is not None:
        backend.close()
        return done
    complete = complete_checkpoints(checkpoint_dir) if resume else []
    resume_from = complete[-1][1] if complete else None
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
    attempts = AttemptLog(output_dir, request["fingerprint"], keep=resume)
    attempts.begin(_step_of(resume_from) or 0)

    model = backend.model
    if settings["load_in_4bit"] or settings["load_in_8bit"]:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings["gradient_checkpointing"])
    from trl import SFTConfig, SFTTrainer

    lora, layers = lora_config(config, model, base_model)
    save_steps = (
        config.checkpoint_every_samples // config.effective_batch
        if config.checkpoint_every_samples
        else config.save_steps
    )
    # the book build's side channel: the steps go there (step_progress), and none of the Trainer's own progress
    # output (a tqdm bar, or an HTML bar in a notebook kernel, and the per-step log dicts) reaches the notebook
    relayed = progress and progress_bars.side_channel() is not None
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
        disable_tqdm=not progress or relayed,
        eval_strategy="no",
    )
    with _quiet_datasets(not progress or relayed):
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=tset.dataset(),
            processing_class=backend.tokenizer,
            peft_config=lora,
            callbacks=[
                attempts.callback(),
                *(callbacks or []),
                *([step_progress(f"fine-tune {task}")] if relayed else []),
            ],
        )
    if not progress or relayed:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the history is in the card
    if len(trainer.train_dataset) != len(tset):  # pragma: no cover - our rows never exceed max_length
        raise RuntimeError("trl dropped or truncated training examples that labscale had already length-checked")
    precision = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings["precision"])
    split = (
        trainer_on_trunk(trainer, layers[0], device_type=device, autocast_dtype=precision)
        if frozen_trunk and layers
        else contextlib.nullcontext()
    )
    with answer_positions_only(device), split as first_layer:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    attempted = attempts.finish()

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
    card = build_card(
        request,
        data=data,
        tset=tset,
        backend=backend,
        config=config,
        resolved={**settings, "frozen_trunk_layers": first_layer or 0},
        lora=lora_summary(peft_model, layers),
        steps={**plan.as_dict(), "global_step": state.global_step, "resumed_from_step": _step_of(resume_from)},
        history=history,
        train_tokens=state.num_input_tokens_seen,
        wall_seconds=time.perf_counter() - started,
        checkpoints=list_checkpoints(output_dir) if config.checkpoint_every_samples else [],
        train_runtime_seconds=round(float(output.metrics.get("train_runtime", float("nan"))), 3),
        attempts=attempted,
    )
    adapter_dir = save_adapter(peft_model, backend, output_dir / "adapter", card)
    return AdapterResult.from_card(adapter_dir)


def step_progress(desc: str):
    """A :class:`transformers.TrainerCallback` showing the optimizer steps of a fine-tune (done / ``max_steps``,
    rate, time left, the latest logged loss) as a :func:`labscale.progress.bar`; a resumed run starts at its
    checkpoint's step."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = progress_bars.bar(total=state.max_steps, initial=state.global_step, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return StepProgress()


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
def answer_positions_only(device: str):
    """On a CPU, have trl's fused LM head project only the positions that carry a label, as it does on CUDA.

    trl scores every position off Triton devices (fixed tile shapes for compilers such as Neuron's), then zeroes
    the unlabelled ones: the same loss and gradients, but with the completion-only loss of the ``cpu`` preset most
    of that vocabulary projection is thrown away. The switch is trl's private ``_use_triton`` as bound in its
    trainer utilities (only the fused head's compact choice reads it there; the kernel keeps its own), restored on
    exit; with a trl that no longer has it, nothing changes. Measured on ViGGO (top 8 layers, batch 4, 8 steps):
    5.6 s a step before, 2.6 s after, with equal losses (the A/B: ``benchmarks/bench_finetune.py --configs
    lora-fp32 lora-fp32-every-position``)."""
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if device != "cpu" or original is None:
        yield
        return
    trl_utils._use_triton = lambda target: target.type == "cpu" or original(target)
    try:
        yield
    finally:
        trl_utils._use_triton = original


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


def _step_of(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.split("-", 1)[1]) if checkpoint is not None else None


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


def train_each(
    base_model: str,
    output_root: str | Path,
    folders: Mapping[str, str | Path],
    train: Callable[[str, Path], AdapterResult],
) -> dict[str, AdapterResult]:
    """One adapter per key of ``folders``, trained in order by ``train(key, output_dir)`` into
    ``output_root/<base model>/<folders[key]>``; returns key -> :class:`AdapterResult`. The sweep loop of
    :func:`finetune_tasks` (one adapter per task) and :func:`labscale.privacy.dp_sweep` (one per epsilon), whose
    callers validate every point before this trains the first."""
    root = Path(output_root) / resolve_base(base_model).slug
    return {key: train(key, root / folder) for key, folder in folders.items()}


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
    from ..tasks import ALL_TASK_NAMES

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
    options = {t: dict(o) for t, o in (task_options or {}).items()}
    return train_each(
        base_model,
        output_root,
        {t: t for t in tasks},
        lambda t, output_dir: finetune(
            base_model,
            t,
            source=source,
            data_path=data_path,
            data_seed=data_seed,
            config=configs[t],
            output_dir=output_dir,
            task_options=options.get(t),
            progress=progress,
        ),
    )


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
                "8-bit": card["resolved"].get("load_in_8bit", False),
                "reused": r.reused,
            }
        )
    return pd.DataFrame(rows)
