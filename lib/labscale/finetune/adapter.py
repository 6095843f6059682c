"""Fine-tuned adapters: the result of a fine-tune, its model card (machine-readable ``labscale_card.json`` and a README
rendered from it), saving, reusing, checking and merging an adapter folder, and its checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from ..records import git_commit, hardware, package_versions, write_json
from .config import FinetuneConfig, samples_for_steps
from .data import TrainingSet

#: the adapter folder's machine-readable card
CARD_FILE = "labscale_card.json"
#: written next to the checkpoints: what was asked, to refuse resuming a different run
REQUEST_FILE = "finetune_request.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


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


def finished_adapter(output_dir: str | Path, fingerprint: str) -> AdapterResult | None:
    """The adapter of a *finished* identical request in ``output_dir`` (``output_dir/adapter``, whose card records
    the request's ``fingerprint``), marked ``reused``; None when there is none or it was made for another request."""
    card = Path(output_dir) / "adapter" / CARD_FILE
    if card.is_file() and json.loads(card.read_text()).get("request_fingerprint") == fingerprint:
        return AdapterResult.from_card(card.parent, reused=True)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------


def complete_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-N`` in ``folder`` that has its trainer state (a checkpoint cut short
    while saving is skipped), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(suffix), path))
    return sorted(found)


def list_checkpoints(output_dir: str | Path) -> list[dict[str, Any]]:
    """The saved checkpoints of a fine-tune, oldest first: ``{"step", "samples", "path"}`` each (evaluate one with
    ``load_backend(f"<base>?adapter={path}")``; it holds the adapter at that point)."""
    output_dir = Path(output_dir)
    request_path = output_dir / REQUEST_FILE
    if not request_path.is_file():
        raise InvalidParameter(f"{output_dir} is not a labscale fine-tuning folder (no {REQUEST_FILE})")
    plan = json.loads(request_path.read_text())["plan"]
    return [
        {
            "step": step,
            "path": str(path),
            "samples": samples_for_steps(
                plan["n_examples"], plan["per_device_batch_size"], plan["grad_accumulation"], step
            ),
        }
        for step, path in complete_checkpoints(output_dir / "checkpoints")
    ]


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------


def peak_memory_mb(device: str) -> float:
    """The process's peak memory so far: allocated CUDA memory on ``"cuda"``, else the max RSS."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def training_hardware() -> dict[str, Any]:
    """:func:`labscale.records.hardware` and torch's thread count: where a fine-tune ran."""
    import torch

    return {**hardware(), "torch_threads": torch.get_num_threads()}


def use_spec(base_model: str, four_bit: bool) -> str:
    """The model string to evaluate the adapter with (``<adapter>`` to be filled in): the base as trained (a base
    trained in 8 bits has no model-string option and is evaluated unquantized)."""
    body, _, query = base_model.partition("?")
    options = [q for q in query.split("&") if q and not q.startswith("load_in_4bit=")]
    if four_bit:
        options.append("load_in_4bit=true")
    return body + "?" + "&".join([*options, "adapter=<adapter>"])


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def lora_summary(peft_model, layers: list[int] | None) -> dict[str, Any]:
    """The card's ``lora`` section: the adapter's settings as peft applied them and its parameter counts."""
    lora = peft_model.peft_config["default"]
    targets = lora.target_modules
    return {
        "r": lora.r,
        "alpha": lora.lora_alpha,
        "dropout": lora.lora_dropout,
        "target_modules": targets if isinstance(targets, str) else sorted(targets),
        "layers": layers or "all",
        "trainable_parameters": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in peft_model.parameters()),
    }


def build_card(
    request: Mapping[str, Any],
    *,
    data,
    tset: TrainingSet,
    backend,
    config: FinetuneConfig,
    resolved: Mapping[str, Any],
    lora: Mapping[str, Any],
    steps: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    train_tokens: int,
    wall_seconds: float,
    checkpoints: Sequence[Mapping[str, Any]] = (),
    privacy: Mapping[str, Any] | None = None,
    data_extra: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The machine-readable card (``labscale_card.json``) of an adapter trained for ``request`` (the dict whose
    fingerprint :func:`finished_adapter` compares): base model, data and the rows used, prompt format, config and
    the settings actually used (``resolved``: device, 4-bit, precision, optimizer), LoRA (:func:`lora_summary`),
    ``steps``, the loss ``history`` (one dict per logged step with its ``loss``), tokens, time, peak memory and
    provenance. ``privacy`` adds the section of a DP-SGD run (:func:`labscale.privacy.dp_finetune`), which the
    README renders; ``data_extra`` adds fields to the data section and ``extra`` top-level fields."""
    losses = [h["loss"] for h in history]
    device = resolved["device"]
    card = {
        "labscale_card_version": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base_model": request["base_model"],
        "request_fingerprint": request["fingerprint"],
        "task": request["task"],
        "data": {
            **data.provenance(),
            "data_seed": request["data_seed"],
            "task_options": request["task_options"],
            "train_split_size": tset.n_split,
            "train_fraction": config.train_fraction,
            "train_selected": tset.n_selected,
            "train_used": len(tset),
            "dropped_too_long": tset.dropped,
            "dropped_ids": tset.dropped_ids[:50],
            "train_ids_sha256": tset.ids_sha256(),
            **dict(data_extra or {}),
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
        "resolved": dict(resolved),
        "lora": dict(lora),
        "steps": dict(steps),
        "train_loss": {
            "first": losses[0] if losses else None,
            "last": losses[-1] if losses else None,
            "mean_first5": _mean(losses[:5]),
            "mean_last5": _mean(losses[-5:]),
            "history": list(history),
        },
        "train_tokens": int(train_tokens),
        "wall_seconds": round(wall_seconds, 3),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "peak_memory_kind": "torch.cuda.max_memory_allocated"
        if device == "cuda"
        else "process max RSS (getrusage high-water mark)",
        "checkpoints": list(checkpoints),
        "use": {"model": use_spec(request["base_model"]["spec"], resolved["load_in_4bit"])},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": training_hardware(),
        **extra,
    }
    if privacy is not None:
        card["privacy"] = dict(privacy)
    return card


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

    method = (
        "QLoRA (4-bit NF4, double quantization)"
        if res["load_in_4bit"]
        else "LoRA (8-bit LLM.int8 base)"
        if res.get("load_in_8bit")
        else "LoRA (full-precision base)"
    )
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
        f"**{steps['effective_epochs']:g} effective epochs** ("
        + (
            f"max_steps {cfg['max_steps']}"
            if cfg.get("max_steps") is not None
            else f"requested {cfg['epochs']:g}, step semantics `{steps['step_semantics']}`"
        )
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


def save_adapter(peft_model, backend, adapter_dir: Path, card: dict[str, Any]) -> Path:
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
    from ..backends import parse_model_spec
    from ..backends.hf import HFBackend

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

    from ..backends import parse_model_spec
    from ..backends.hf import HFBackend

    spec = parse_model_spec(base_model).base  # full precision, without any adapter
    spec = dataclasses.replace(spec, options={k: v for k, v in spec.options.items() if k != "load_in_4bit"})
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
