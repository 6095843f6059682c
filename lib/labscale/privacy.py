"""Privacy: differentially private LoRA fine-tuning (the study's protocol) and an empirical leakage audit (beyond it).

**DP fine-tuning** (:func:`dp_finetune`). The study trained QLoRA adapters with DP-SGD (dp-transformers on Opacus) at
epsilon 0.5, 1, 5, 20 and infinity on MedQA-TF, without reporting delta, the noise multiplier or the clipping norm.
Here Opacus' :class:`~opacus.PrivacyEngine` makes the LoRA parameters' optimizer private
(``make_private_with_epsilon``: per-example gradient clipping to ``max_grad_norm``, Gaussian noise calibrated by the
RDP accountant to reach the target epsilon at ``delta`` after the planned epochs, Poisson sampling of each logical
batch), and every one of those numbers, plus the epsilon actually spent, goes into the adapter's card. Epsilon
= infinity runs the *same* loop without clipping noise or Poisson sampling (ordinary LoRA training), so the five
points differ only in privacy. The training rows are exactly those of :func:`labscale.finetune.build_training_set`
(the evaluation prompt + answer + EOS); the loss is on the whole sequence by default, like the study's
``DataCollatorForPrivateCausalLanguageModeling``, which is also what exposes the records in the prompt to
memorisation. trl's ``SFTTrainer`` has no DP-SGD support, hence the small Opacus loop; a run is not resumed
midway (DP accounting would have to be restored with it) but a finished identical run is reused.

**Leakage audit** (the study ran none):

* *Canary exposure* (Carlini et al. 2019, "The Secret Sharer"): random secrets ("The pharmacy access code of <name>
  is 4 8 1 5 9 2.") are inserted into the training data 1, 4, 16... times; exposure = log2|R| - log2 rank of the
  true secret among all |R| = 10^digits candidates by model likelihood, estimated from sampled candidates with the
  skew-normal fit of the paper (:func:`labscale.metrics.canary_exposure`).
* *Membership inference*: scores LOSS, reference-calibrated (the base model is the reference, free for a LoRA
  adapter), zlib and Min-K% Prob on members (the training rows) and non-members (rows built the same way from the
  validation split of the same generator or release, so from the same distribution), reported as AUROC and TPR at
  1 % FPR with bootstrap intervals (:func:`labscale.metrics.membership_metrics`).

Both need token log-probabilities of given text, which chat APIs do not return: API models cannot be audited this
way (:mod:`labscale.scoring`).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import progress as progress_bars
from . import records
from .errors import InvalidParameter, check_choice, check_range
from .metrics import canary_exposure, membership_metrics

#: the study's privacy budgets (Table 4); infinity is non-private training
STUDY_EPSILONS = (0.5, 1.0, 5.0, 20.0, math.inf)
#: membership-inference attacks, in display order
ATTACKS = ("loss", "reference", "zlib", "min_k")

_FIRST_NAMES = (
    "Mira",
    "Oskar",
    "Tamsin",
    "Idris",
    "Linnea",
    "Caspian",
    "Odile",
    "Rafferty",
    "Sunniva",
    "Evander",
    "Perpetua",
    "Anselm",
)
_SURNAMES = (
    "Quell",
    "Varga",
    "Holloway",
    "Brisk",
    "Ostrander",
    "Penhale",
    "Marlow",
    "Teague",
    "Aldous",
    "Fenwick",
    "Corrigan",
    "Wystan",
)


# ---------------------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------------------


def parse_epsilon(value: Any) -> float:
    """A privacy budget: a positive number, or ``inf`` / ``"inf"`` / ``None`` for non-private training."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "∞")):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidParameter(f"epsilon={value!r} is out of range; valid values: a number > 0, or 'inf' (non-private)")
    return float(value)


def epsilon_label(epsilon: float) -> str:
    """``"eps=0.5"``, ``"eps=inf"``: the label of a privacy budget in tables, folders and model names."""
    return "eps=inf" if math.isinf(epsilon) else f"eps={epsilon:g}"


@dataclass(frozen=True)
class Canary:
    """A random secret inserted ``repetitions`` times into the training data."""

    id: str
    prefix: str  # "The pharmacy access code of Mira Quell is"
    secret: str  # " 4 8 1 5 9 2."
    repetitions: int
    digits: int

    @property
    def text(self) -> str:
        return self.prefix + self.secret

    def candidate(self, digits: Sequence[int]) -> str:
        """The secret format with other digits: one element of the randomness space R."""
        return " " + " ".join(str(d) for d in digits) + "."


def canary_table(canaries: Sequence[Canary]) -> pd.DataFrame:
    """The canaries as a table: id, the sentence with its secret, how often it is repeated in training, and the
    size of its randomness space (10^digits)."""
    rows = [
        {"canary": c.id, "sentence": c.text, "repetitions": c.repetitions, "possible secrets": 10**c.digits}
        for c in canaries
    ]
    return pd.DataFrame(rows).set_index("canary")


def make_canaries(repetitions: Sequence[int] = (1, 4, 16), *, digits: int = 6, seed: int = 0) -> list[Canary]:
    """One canary per repetition count, each with a fresh fictional name and ``digits`` random digits."""
    reps = list(repetitions)
    if not reps:
        raise InvalidParameter("canary repetitions must not be empty (e.g. [1, 4, 16])")
    for r in reps:
        check_range("canary repetitions", r, 1, 1000, integer=True)
    check_range("canary digits", digits, 2, 12, integer=True)
    if len(reps) > len(_FIRST_NAMES):
        raise InvalidParameter(f"at most {len(_FIRST_NAMES)} canaries, got {len(reps)}")
    rng = random.Random(f"canaries-{seed}")
    firsts, lasts = rng.sample(_FIRST_NAMES, len(reps)), rng.sample(_SURNAMES, len(reps))
    canaries = []
    for i, (r, first, last) in enumerate(zip(reps, firsts, lasts, strict=True)):
        secret = [rng.randrange(10) for _ in range(digits)]
        prefix = f"The pharmacy access code of {first} {last} is"
        canaries.append(Canary(f"canary-{i}", prefix, " " + " ".join(map(str, secret)) + ".", r, digits))
    return canaries


# ---------------------------------------------------------------------------------------------------------------
# DP fine-tuning
# ---------------------------------------------------------------------------------------------------------------


def _canary_rows(canaries: Sequence[Canary], backend) -> list[dict[str, Any]]:
    """Training rows for the canaries (each repeated), tokenized exactly as the audit scores them."""
    from .finetune import encode_prompt

    tokenizer = backend.tokenizer
    rows = []
    for c in canaries:
        head = encode_prompt(backend, c.prefix)
        tail = list(tokenizer(c.secret + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
        for k in range(c.repetitions):
            rows.append(
                {
                    "id": f"{c.id}-rep{k}",
                    "prompt": c.prefix,
                    "completion": c.secret,
                    "input_ids": head + tail,
                    "completion_mask": [1] * (len(head) + len(tail)),
                }
            )
    return rows


def _collate(rows: list[dict[str, Any]], pad_id: int, completion_only: bool):
    """Token ids, attention mask and loss weights, right-padded; with the rows' frozen-trunk states (``"trunk"``,
    see :mod:`labscale.finetune.trunk`) also those, padded alike, as a fourth tensor."""
    import torch

    from .finetune.trunk import pad_states, right_padded

    ids, attention = right_padded([r["input_ids"] for r in rows], pad_id)
    width = ids.shape[1]
    weights = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        weights[i, :n] = torch.tensor(r["completion_mask"], dtype=torch.float32) if completion_only else 1.0
    if rows and "trunk" in rows[0]:
        return ids, attention, weights, pad_states([r["trunk"] for r in rows], width)
    return ids, attention, weights


def _example_losses(model, ids, attention, weights, states=None):
    """Mean next-token loss per example over its weighted positions (per-example, as DP-SGD clips per example).
    ``model`` is the peft model; the output head runs at the weighted positions only, never on padding (a quarter
    of the privacy chapter's padded batches). With ``states`` (frozen-trunk hidden states) the model holds only its
    top layers and starts from them."""
    import torch

    causal = model.get_base_model()
    inputs = {"inputs_embeds": states} if states is not None else {"input_ids": ids}
    hidden = causal.get_decoder()(**inputs, attention_mask=attention).last_hidden_state
    w = weights[:, 1:]
    rows, cols = w.nonzero(as_tuple=True)
    logits = causal.get_output_embeddings()(hidden[rows, cols]).float()
    nll = torch.nn.functional.cross_entropy(logits, ids[rows, cols + 1], reduction="none")
    totals = torch.zeros(len(ids), dtype=nll.dtype, device=nll.device).index_add(0, rows, nll * w[rows, cols])
    return totals / w.sum(dim=1).clamp(min=1.0)


def _check_plain_head(model, row: Sequence[int]) -> None:
    """Refuse a model whose logits are not its output head applied to its decoder's last hidden state (a logit
    soft-cap or scale in ``forward``), which :func:`_example_losses` would train on without; checked on ``row``."""
    from .finetune.trunk import logit_gap

    causal = model.get_base_model()

    def head_on_hidden(ids):
        return causal.get_output_embeddings()(causal.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state)

    gap = logit_gap(causal, row, head_on_hidden)
    if not gap <= 1e-4:
        raise InvalidParameter(
            f"{type(causal).__name__}: its logits are not its output head on the last hidden state (largest "
            f"difference {gap:.3g}); DP fine-tuning supports causal LMs whose forward applies the head alone"
        )


def _check_dp_config(config) -> None:
    """Refuse a config DP-SGD cannot train: not a valid FinetuneConfig, fractional epochs (the accountant counts whole
    epochs) or a 4-bit base model (Opacus needs per-example gradients of full-precision LoRA layers)."""
    from .finetune import check_config

    check_config(config)
    if config.epochs != int(config.epochs):
        raise InvalidParameter(f"epochs={config.epochs} must be a whole number for DP accounting; valid: 1, 2, 3...")
    if config.precision not in ("auto", "fp32"):
        raise InvalidParameter(
            f"precision={config.precision!r}: DP fine-tuning trains in fp32 here (Opacus's per-example gradients); "
            "valid: 'auto' or 'fp32'"
        )
    if config.load_in_4bit:
        raise InvalidParameter(
            "load_in_4bit=True is not supported for DP fine-tuning here (Opacus computes "
            "per-example gradients of full-precision LoRA layers); set load_in_4bit=False"
        )


def dp_finetune(
    base_model: str,
    task: str,
    *,
    epsilon: Any,
    config,
    output_dir: str | Path,
    delta: float | None = None,
    max_grad_norm: float = 1.0,
    source: str = "offline",
    data_path: str | Path | None = None,
    data_seed: int = 0,
    task_options: Mapping[str, Any] | None = None,
    canaries: Sequence[Canary] = (),
    resume: bool = True,
    progress: bool = False,
    frozen_trunk: bool = True,
    trunks: dict | None = None,
):
    """Fine-tune a LoRA adapter with DP-SGD at ``epsilon`` (``inf``: non-private) and return its
    :class:`~labscale.finetune.AdapterResult`; the adapter goes to ``output_dir/adapter`` with a card that records
    epsilon (target and spent), delta, noise multiplier, clipping norm, sample rate and steps.

    ``config`` is a :class:`~labscale.finetune.FinetuneConfig` (LoRA rank, layers, learning rate, epochs, logical batch
    = ``per_device_batch_size * grad_accumulation``, ``completion_only_loss``); ``epochs`` must be whole for DP
    accounting. ``delta`` defaults to ``1 / (10 n)`` for ``n`` training rows. ``canaries`` are added to the training
    rows (:func:`make_canaries`). A finished run of the identical request is reused.

    With ``top_layers`` set and ``frozen_trunk=True``, the frozen layers below run once per row, not once per step
    (:mod:`labscale.finetune.trunk`, checked against the full forward pass first; the losses agree with the full
    pass to rounding, so the request does not depend on it); ``trunks`` (a dict) shares those states between the
    runs of a sweep on the same rows.
    """
    from .finetune import (
        AdapterResult,
        TrainData,
        build_card,
        build_training_set,
        finished_adapter,
        lora_config,
        lora_summary,
        resolve_base,
        save_adapter,
        training_request,
    )
    from .finetune.trunk import top_only

    started = time.perf_counter()
    eps = parse_epsilon(epsilon)
    _check_dp_config(config)
    check_range("max_grad_norm", max_grad_norm, 1e-6, None)
    if delta is not None:
        check_range("delta", delta, 1e-12, 0.1)
    spec = resolve_base(base_model)
    where = TrainData(task, source, data_path, data_seed, task_options or {})
    task_obj, data = where.load()

    from .backends.hf import HFBackend

    backend = HFBackend.from_spec(spec)
    backend.load()
    tset = build_training_set(task_obj, data, backend, config)
    rows = tset.rows + _canary_rows(canaries, backend)
    delta = delta if delta is not None else 1.0 / (10 * len(rows))
    if delta >= 1.0 / len(rows):
        raise InvalidParameter(
            f"delta={delta} is not below 1/n = {1 / len(rows):.4g} for n={len(rows)} training "
            "rows; a meaningful guarantee needs delta << 1/n"
        )
    batch = config.effective_batch
    epochs = int(config.epochs)
    request = training_request(
        base_model,
        backend,
        where,
        data,
        tset,
        config,
        kind="dp_lora",
        privacy={"epsilon": "inf" if math.isinf(eps) else eps, "delta": delta, "max_grad_norm": max_grad_norm},
        canaries=[c.__dict__ for c in canaries],
    )
    output_dir = Path(output_dir)
    done = finished_adapter(output_dir, request["fingerprint"]) if resume else None
    if done is not None:
        backend.close()
        return done

    import torch
    from peft import get_peft_model

    torch.manual_seed(config.seed)
    model = backend.model
    model.train()
    lora, layers = lora_config(config, model, base_model)
    peft_model = get_peft_model(model, lora)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    pad = backend.tokenizer.pad_token_id if backend.tokenizer.pad_token_id is not None else 0
    _check_plain_head(peft_model, rows[0]["input_ids"])
    first_layer, states = (
        _frozen_trunk(peft_model, backend, rows, layers, {} if trunks is None else trunks)
        if frozen_trunk
        else (None, None)
    )
    if states is not None:
        rows = [{**r, "trunk": state} for r, state in zip(rows, states, strict=True)]
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        rows,
        batch_size=batch,
        shuffle=True,
        generator=generator,
        collate_fn=lambda b: _collate(b, pad, config.completion_only_loss),
    )
    engine = None
    trained_model = peft_model
    if not math.isinf(eps):
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant="rdp")
        trained_model, optimizer, loader = engine.make_private_with_epsilon(
            module=peft_model,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=eps,
            target_delta=delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
        )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * epochs
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay (the Trainer's "linear")
        optimizer,
        lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total_steps - s) / max(total_steps - warmup, 1)),
    )
    history, tokens, step = [], 0, 0
    top = top_only(peft_model, first_layer) if first_layer is not None else contextlib.nullcontext()
    with (
        progress_bars.bar(
            total=total_steps, desc=f"DP-LoRA {epsilon_label(eps)}", disable=not progress, leave=False
        ) as bar,
        top,
    ):
        for epoch in range(epochs):
            for ids, attention, weights, *states in loader:
                step += 1
                if len(ids) == 0:  # Poisson sampling can draw an empty batch: the noise-only step is skipped
                    scheduler.step()
                    bar.update(1)
                    continue
                # Opacus hooked peft_model's LoRA layers (trained_model wraps it): a direct call records them alike
                loss = _example_losses(peft_model, ids, attention, weights, *states).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if engine is None and config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                tokens += int(attention.sum())
                history.append(
                    {
                        "step": step,
                        "loss": float(loss.detach()),
                        "epoch": epoch + 1,
                        "learning_rate": float(scheduler.get_last_lr()[0]),
                        "batch": int(len(ids)),
                    }
                )
                bar.update(1)
    spent = engine.get_epsilon(delta) if engine is not None else math.inf
    peft_model.eval()
    card = build_card(
        request,
        data=data,
        tset=tset,
        backend=backend,
        config=config,
        resolved={
            "device": backend.device,
            "load_in_4bit": False,
            "gradient_checkpointing": False,
            "precision": "fp32",
            "optim": "torch.optim.AdamW",
            "frozen_trunk_layers": first_layer or 0,
        },
        lora=lora_summary(peft_model, layers),
        steps={
            "global_step": step,
            "optimizer_steps": step,
            "steps_per_epoch": steps_per_epoch,
            "epochs": epochs,
            "logical_batch": batch,
            "samples": len(rows) * epochs,
            "effective_epochs": float(epochs),
            "step_semantics": "true",
        },
        history=history,
        train_tokens=tokens,
        wall_seconds=time.perf_counter() - started,
        privacy={
            "epsilon_target": "inf" if math.isinf(eps) else eps,
            "epsilon_spent": "inf" if math.isinf(spent) else round(float(spent), 4),
            "delta": delta,
            "max_grad_norm": max_grad_norm if engine is not None else None,
            "noise_multiplier": float(optimizer.noise_multiplier) if engine is not None else 0.0,
            "sample_rate": (1.0 / steps_per_epoch) if engine is not None else None,
            "accountant": "rdp" if engine is not None else None,
            "sampling": "poisson" if engine is not None else "shuffled batches",
            "mechanism": "DP-SGD (Opacus PrivacyEngine.make_private_with_epsilon)"
            if engine is not None
            else "non-private (same loop, no clipping noise)",
        },
        data_extra={"canary_rows": len(rows) - len(tset)},
        kind="dp_lora",
        canaries=request["canaries"],
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(output_dir / "dp_request.json", request)
    adapter_dir = save_adapter(peft_model, backend, output_dir / "adapter", card)
    backend.close()
    return AdapterResult.from_card(adapter_dir)


def _frozen_trunk(model, backend, rows: list[dict[str, Any]], layers, trunks: dict) -> tuple[int | None, Any]:
    """The first adapted layer and every row's state entering it, when the frozen trunk below can be computed once
    (LoRA on the top layers only, and the split checked against the full forward pass on the first row). ``trunks``
    maps (base model identity, first layer) to its :class:`~labscale.finetune.trunk.SharedTrunk`, so the next run
    on the same base and rows reuses the states. Else ``(None, None)``: every step runs the whole model."""
    from .finetune.trunk import SharedTrunk

    if not layers or min(layers) == 0:
        return None, None
    first_layer = min(layers)
    identity = json.dumps(backend.identity(), sort_keys=True, default=str)
    trunk = trunks.setdefault((identity, first_layer), SharedTrunk(first_layer))
    if not trunk.usable(model, rows[0]["input_ids"]):
        return None, None
    return first_layer, trunk.states(model, [r["input_ids"] for r in rows])


def dp_sweep(
    base_model: str,
    task: str,
    epsilons: Sequence[Any] = STUDY_EPSILONS,
    *,
    config,
    output_root: str | Path = "runs/adapters_dp",
    **options: Any,
) -> dict[str, Any]:
    """:func:`dp_finetune` at every epsilon into ``output_root/<model>/<task>/eps=<e>``; every epsilon, the task
    and the config are checked before the first run trains (the loop is :func:`labscale.finetune.train_each`).
    Returns label -> :class:`~labscale.finetune.AdapterResult`."""
    from .finetune import train_each
    from .tasks import ALL_TASK_NAMES

    values = {epsilon_label(e): e for e in map(parse_epsilon, epsilons)}
    if not values:
        raise InvalidParameter("epsilons must not be empty (the study's: 0.5, 1, 5, 20, inf)")
    check_choice("task to fine-tune", task, ALL_TASK_NAMES)
    _check_dp_config(config)
    trunks: dict = options.pop("trunks", None) or {}  # the frozen trunk's states, computed once for every budget
    return train_each(
        base_model,
        output_root,
        {label: Path(task) / label for label in values},
        lambda label, output_dir: dp_finetune(
            base_model, task, epsilon=values[label], config=config, output_dir=output_dir, trunks=trunks, **options
        ),
    )


def dp_summary(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per DP adapter: target and spent epsilon, delta, noise multiplier, clipping, steps, loss, time."""
    rows = []
    for label, r in results.items():
        card = r.model_card
        p = card["privacy"]
        rows.append(
            {
                "adapter": label,
                "epsilon target": p["epsilon_target"],
                "epsilon spent": p["epsilon_spent"],
                "delta": p["delta"],
                "noise multiplier": round(p["noise_multiplier"], 4),
                "clip norm": p["max_grad_norm"],
                "sample rate": p["sample_rate"],
                "rows (incl. canaries)": card["data"]["train_used"] + card["data"]["canary_rows"],
                "steps": card["steps"]["global_step"],
                "epochs": card["steps"]["epochs"],
                "loss first 5": card["train_loss"]["mean_first5"],
                "loss last 5": card["train_loss"]["mean_last5"],
                "train s": card["wall_seconds"],
                "reused": r.reused,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Leakage audit
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class AuditData:
    """Members (the training rows of the audited adapters), non-members (same construction, validation split) and
    the canaries, all as token ids exactly as trained."""

    members: list[dict[str, Any]]
    non_members: list[dict[str, Any]]
    canaries: list[Canary]
    request: dict[str, Any]


def audit_data(adapter_dirs: Sequence[str | Path]) -> AuditData:
    """Rebuild the members and a same-size, same-distribution non-member set for DP adapters trained by
    :func:`dp_finetune` on the *same* data (refused otherwise)."""
    from .backends.hf import HFBackend
    from .finetune import FinetuneConfig, TrainData, build_training_set, resolve_base, training_rows

    if not adapter_dirs:
        raise InvalidParameter("the audit needs at least one adapter folder from dp_finetune")
    requests = []
    for folder in adapter_dirs:
        path = Path(folder).parent / "dp_request.json"
        if not path.is_file():
            raise InvalidParameter(
                f"{str(folder)!r} is not an adapter written by labscale.privacy.dp_finetune (no {path.name} beside it)"
            )
        requests.append(json.loads(path.read_text()))
    keys = {(r["train_ids_sha256"], r["data_sha256"], json.dumps(r["canaries"], sort_keys=True)) for r in requests}
    if len(keys) != 1:
        raise InvalidParameter("the adapters were trained on different data or canaries; audit one sweep at a time")
    request = requests[0]
    task, data = TrainData.from_request(request).load()
    config = FinetuneConfig(**request["config"])
    backend = HFBackend.from_spec(resolve_base(request["base_model"]["spec"]))
    backend.load()
    members = build_training_set(task, data, backend, config).rows
    held_out = data.split("validation")
    non_members, _ = training_rows(task, held_out, backend, config.max_length)
    non_members = non_members[: len(members)]
    if len(non_members) < len(members):
        members = members[: len(non_members)]
    backend.close()
    canaries = [Canary(**c) for c in request["canaries"]]
    return AuditData(members, non_members, canaries, request)


def _membership_scores(
    backend, rows: list[dict[str, Any]], reference: list[float] | None, k: float, progress: bool, trunk=None
) -> list[dict[str, float]]:
    from .scoring import sequence_logprobs, zlib_entropy

    scored = sequence_logprobs(
        backend, [r["input_ids"] for r in rows], progress=progress, desc="membership", trunk=trunk
    )
    out = []
    for i, (row, s) in enumerate(zip(rows, scored, strict=True)):
        lp = s.token_logprobs
        lowest = np.sort(lp)[: max(1, int(np.ceil(k * len(lp))))]
        loss = -float(lp.mean())
        out.append(
            {
                "loss": -loss,
                "zlib": -loss / zlib_entropy(row["prompt"] + row["completion"]),
                "min_k": float(lowest.mean()),
                "nll": loss,
                "reference": (reference[i] - loss) if reference is not None else float("nan"),
            }
        )
    return out


def _canary_nlls(backend, canary: Canary, n_candidates: int, seed: int, trunk=None) -> tuple[float, np.ndarray]:
    from .scoring import continuation_logprobs

    rng = random.Random(f"{canary.id}-{seed}")
    seen, candidates = {canary.secret}, []
    while len(candidates) < n_candidates:
        text = canary.candidate([rng.randrange(10) for _ in range(canary.digits)])
        if text not in seen:
            seen.add(text)
            candidates.append(text)
    scored = continuation_logprobs(
        backend, [canary.prefix] * (n_candidates + 1), [canary.secret] + candidates, progress=False, trunk=trunk
    )
    nll = np.array([-s.total for s in scored])
    return float(nll[0]), nll[1:]


def leakage_audit(
    base_model: str,
    adapters: Mapping[str, str | Path],
    *,
    output_dir: str | Path = "runs/privacy_audit",
    min_k: float = 0.2,
    fpr: float = 0.01,
    n_candidates: int = 99,
    seed: int = 0,
    n_resamples: int = 1000,
    progress: bool = True,
    shared_trunk: bool = True,
) -> pd.DataFrame:
    """Membership inference (LOSS, reference-calibrated, zlib, Min-K%) and canary exposure for the base model and
    each adapter (label -> adapter folder from :func:`dp_finetune`, all trained on the same data). Writes one run
    record per model to ``output_dir/<label>`` and returns the tidy table (model, audit, metric, value, CI...).
    When every adapter adapts only the top layers and ``shared_trunk`` is on, the layers below run once per text for
    all the models (:class:`~labscale.finetune.trunk.SharedTrunk`); each model then runs only its top layers. The
    scores agree with the full pass to rounding, so the records do not depend on it."""
    from .backends import load_backend, parse_model_spec
    from .finetune import check_adapter
    from .finetune.trunk import SharedTrunk, adapted_from
    from .protocol import Produced, RunSpec, execute

    check_range("min_k", min_k, 0.01, 1.0)
    check_range("n_candidates", n_candidates, 10, 100_000, integer=True)
    base = parse_model_spec(base_model)
    for folder in adapters.values():
        check_adapter(folder, base_model)
    data = audit_data(list(adapters.values()))
    # the layers below the lowest adapted one are the base model's in every audited model: run them once per text
    first_layer = min(adapted_from(folder) for folder in adapters.values())
    trunk = SharedTrunk(first_layer) if shared_trunk and first_layer > 0 else None
    rows = data.members + data.non_members
    is_member = [True] * len(data.members) + [False] * len(data.non_members)
    models = {"base": None, **dict(adapters)}
    reference: list[float] | None = None
    tables = []
    for label, folder in progress_bars.bar(models.items(), desc="leakage audit", disable=not progress):
        spec = base if folder is None else base.with_adapter(folder)
        backend = load_backend(spec, scoring=True)
        run = RunSpec(
            experiment="privacy_audit",
            model=spec,
            label=label,
            task=data.request["task"],
            source=data.request["source"],
            scenario="audit",
            seed=seed,
            n_resamples=n_resamples,
            settings={"min_k": min_k, "fpr": fpr, "n_candidates": n_candidates},
        )

        def produce(backend=backend, folder=folder, reference=reference) -> Produced:
            scores = _membership_scores(backend, rows, reference, min_k, progress=False, trunk=trunk)
            metrics: dict[str, dict] = {}
            for attack in ATTACKS:
                if attack == "reference" and folder is None:
                    continue  # the base model is its own reference: the score would be identically 0
                values = [s[attack] for s in scores]
                for name, m in membership_metrics(
                    values, is_member, fpr=fpr, n_resamples=n_resamples, seed=seed
                ).items():
                    metrics[f"mia_{attack}_{name}"] = m
            canary_rows = []
            for canary in data.canaries:
                own, others = _canary_nlls(backend, canary, n_candidates, seed, trunk=trunk)
                m = canary_exposure(own, others, 10**canary.digits, n_resamples=n_resamples, seed=seed)
                metrics[f"exposure_{canary.repetitions}x"] = {
                    **m,
                    "canary": canary.id,
                    "repetitions": canary.repetitions,
                }
                canary_rows.append(
                    {"id": canary.id, "repetitions": canary.repetitions, "nll": own, "sampled_rank": m["sampled_rank"]}
                )
            predictions = [
                {"id": r["id"], "member": mem, **s} for r, mem, s in zip(rows, is_member, scores, strict=True)
            ] + canary_rows
            provenance = {
                "data": {
                    "members": len(data.members),
                    "non_members": len(data.non_members),
                    "non_member_source": "validation split, built exactly as the training rows",
                    "train_ids_sha256": data.request["train_ids_sha256"],
                    "data_sha256": data.request["data_sha256"],
                },
                "canaries": [c.__dict__ for c in data.canaries],
                "items": len(rows),
            }
            return Produced(predictions, metrics, provenance, backend=backend)

        # what the audit's numbers depend on besides the spec: the audited rows and canaries (and, for an adapter,
        # the base model's losses, which depend on the same inputs)
        inputs = (
            data.request["train_ids_sha256"],
            data.request["data_sha256"],
            data.request["canaries"],
            [r["id"] for r in data.non_members],
        )
        run_dir = execute(
            run, Path(output_dir) / label.replace("=", "-"), produce, identity=backend.identity(), inputs=inputs
        )
        backend.close()
        if folder is None:  # the base model's losses are every adapter's reference
            predictions = records.read_run(run_dir)["predictions"]
            reference = predictions.loc[predictions["member"].notna(), "nll"].tolist()
        tables.append(audit_table(run_dir))
    return pd.concat(tables, ignore_index=True)


def audit_table(run_dir: str | Path) -> pd.DataFrame:
    """The tidy rows of one audit record: model, audit ("membership: <attack>" or "canary"), metric, value, CI."""
    record = records.read_run(run_dir)
    rows = []
    for name, m in record["metrics"].items():
        if name.startswith("mia_"):
            attack = next(a for a in ATTACKS if name.startswith(f"mia_{a}_"))
            audit, metric = f"membership: {attack}", name[len(f"mia_{attack}_") :]
        else:
            audit, metric = "canary", name
        rows.append(
            {
                "model": record["params"]["model"],
                "audit": audit,
                "metric": metric,
                "value": m["value"],
                "ci_low": m["ci_low"],
                "ci_high": m["ci_high"],
                "n": m["n"],
                "interval": m.get("interval"),
                "max_exposure": m.get("max_exposure"),
                "run": str(run_dir),
            }
        )
    return pd.DataFrame(rows)


def audit_comparisons(
    audit: pd.DataFrame, *, baseline: str = "base", n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Membership-inference AUROC of every audited model minus ``baseline``'s, per attack, on the same member and
    non-member rows (read from the audit records): the paired BCa 95 % interval and permutation p-value of
    :func:`labscale.metrics.paired_difference` on within-model ranks (the permutation swaps ranks, not raw scores
    on two models' different scales), Holm-adjusted over every row returned."""
    from scipy.stats import rankdata

    from .compare import comparison_frame, comparison_row
    from .metrics import paired_difference, roc_auc

    runs = audit.drop_duplicates("model").set_index("model")["run"]
    if baseline not in runs.index:
        raise InvalidParameter(f"no audit of {baseline!r}; valid choices: {', '.join(map(repr, runs.index))}")

    def member_scores(run: str) -> pd.DataFrame:
        predictions = records.read_run(run)["predictions"]
        return predictions[predictions["member"].notna()].set_index("id")

    base = member_scores(runs[baseline])
    rows = []
    for label, run in runs.items():
        if label == baseline:
            continue
        mine = member_scores(run)
        if sorted(mine.index) != sorted(base.index):
            raise InvalidParameter(f"the audits of {label!r} and {baseline!r} scored different rows; rerun both")
        mine = mine.loc[base.index]
        member = base["member"].astype(bool).to_numpy()
        for attack in ATTACKS:
            a, b = mine[attack].to_numpy(float), base[attack].to_numpy(float)
            if np.isnan(a).any() or np.isnan(b).any():
                continue  # the reference attack is undefined for the base model
            # AUROC depends only on each model's ranking, but the two models' raw scores live on different scales,
            # so swapping raw scores between models is no null; swapping within-model ranks is (Venkatraman and
            # Begg's paired permutation test for ROC curves). The AUROCs and their bootstrap are unchanged.
            a, b = rankdata(a) / len(a), rankdata(b) / len(b)
            m = paired_difference(
                roc_auc,
                a,
                b,
                member,
                n_resamples=n_resamples,
                seed=seed,
                run_value=roc_auc(a, member),
                baseline_value=roc_auc(b, member),
            )
            rows.append(
                comparison_row(
                    m,
                    model=label,
                    task="membership inference",
                    metric=f"AUROC ({attack})",
                    condition=label,
                    baseline=baseline,
                )
            )
    return comparison_frame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Utility
# ---------------------------------------------------------------------------------------------------------------


def utility_by_epsilon(
    base_model: str,
    results: Mapping[str, Any],
    *,
    limit: int | None = None,
    seed: int = 0,
    output_dir: str | Path = "runs/privacy",
    n_resamples: int = 1000,
    cache=None,
    progress: bool = True,
) -> pd.DataFrame:
    """The base model and every DP adapter (label -> AdapterResult of :func:`dp_sweep`) evaluated zero-shot on the
    test split of the data they were trained on; the tidy metrics table with ``epsilon`` and ``spent`` columns
    (run records under ``output_dir/base`` and ``output_dir/<label>``)."""
    from .sweep import evaluate_zero_shot

    if not results:
        raise InvalidParameter("utility_by_epsilon needs at least one DP adapter")
    first = next(iter(results.values())).model_card
    task = first["task"]
    data = {
        "source": first["data"]["source"],
        "data_path": json.loads((next(iter(results.values())).adapter_dir.parent / "dp_request.json").read_text())[
            "data_path"
        ],
        "task_options": first["data"]["task_options"],
        "data_seed": first["data"]["data_seed"],
        "data_sha256": first["data"]["content_sha256"],
    }
    points = [("base", None, None, None)] + [
        (label, r.adapter_dir, r.model_card["privacy"]["epsilon_target"], r.model_card["privacy"]["epsilon_spent"])
        for label, r in results.items()
    ]
    tables = []
    for label, adapter, target, spent in points:
        table = evaluate_zero_shot(
            base_model,
            task,
            str(adapter) if adapter else None,
            output_dir=Path(output_dir) / label.replace("=", "-"),
            data=data,
            limit=limit,
            seed=seed,
            n_resamples=n_resamples,
            max_new_tokens=None,
            cache=cache,
            progress=progress,
        )
        table.insert(0, "adapter", label)
        table.insert(1, "epsilon", "–" if target is None else str(target))
        table.insert(2, "epsilon spent", "–" if spent is None else str(spent))
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
