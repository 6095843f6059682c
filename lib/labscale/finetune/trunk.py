"""The frozen trunk, computed once: when LoRA adapts only the top layers of a decoder (``top_layers``), the layers
below never change while training, so the hidden state that enters the first adapted layer is a fixed function of
each training row. :func:`trunk_states` computes it once per row (for every epoch, and for every run on the same
rows, such as the privacy sweep's budgets); :func:`top_only` runs the model from there, feeding those states as
``inputs_embeds`` to the top layers alone. :func:`check_top_only` verifies that the split reproduces the full
forward pass on a real row before it is used (an architecture that rescales ``inputs_embeds`` would not).
:func:`trainer_on_trunk` does the same for a trl ``SFTTrainer``: every epoch after the first, and the first's own
batches, run only the adapted layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

#: largest absolute logit difference allowed between the split and the full forward pass (fp32 rounding)
SPLIT_TOLERANCE = 1e-3


class _Captured(Exception):
    """Raised by the capture hook to stop the forward pass once the trunk's output is in hand."""


def decoder_layers(model) -> tuple[Any, str]:
    """The module holding ``model``'s decoder layers and its attribute name (the ModuleList as long as
    ``config.num_hidden_layers``: ``model.layers`` in Llama and Mistral, ``transformer.h`` in Falcon)."""
    import torch

    n_layers = model.config.num_hidden_layers
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == n_layers:
                return module, name
    raise ValueError(f"no ModuleList of {n_layers} decoder layers in {type(model).__name__}")


def trunk_states(model, rows: Sequence[Sequence[int]], first_layer: int, *, batch_size: int = 8) -> list:
    """For each row of token ids, the hidden state entering decoder layer ``first_layer`` (``[len, hidden]``,
    float32, on the CPU). Rows are run in batches of similar length, right-padded (causal attention: the padding
    never reaches a real position), and each forward pass stops at that layer."""
    import torch

    holder, name = decoder_layers(model)
    captured: dict[str, torch.Tensor] = {}

    def capture(_module, args, kwargs):
        captured["h"] = args[0] if args else kwargs["hidden_states"]
        raise _Captured

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # frozen features: no dropout in the trunk
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    states: list = [None] * len(rows)
    handle = getattr(holder, name)[first_layer].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                ids, attention = right_padded([rows[i] for i in chunk])
                with contextlib.suppress(_Captured):
                    model(input_ids=ids.to(device), attention_mask=attention.to(device), use_cache=False)
                hidden = captured.pop("h").float().cpu()
                for j, i in enumerate(chunk):
                    states[i] = hidden[j, : len(rows[i])].clone()
    finally:
        handle.remove()
        model.train(was_training)
    return states


def right_padded(rows: Sequence[Sequence[int]], pad_id: int = 0):
    """Token-id rows right-padded with ``pad_id`` into one ``[rows, longest row]`` tensor, and the attention mask (1
    on each row's own tokens). Causal attention never carries the padding back to a real position, so each row's
    states are those it has alone."""
    import torch

    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def pad_states(states: Sequence, width: int):
    """Right-pad per-row trunk states (``[len, hidden]``) with zeros into one ``[rows, width, hidden]`` tensor."""
    import torch

    hidden = states[0].shape[-1] if states else 1
    out = torch.zeros((len(states), width, hidden), dtype=states[0].dtype if states else torch.float32)
    for i, s in enumerate(states):
        out[i, : len(s)] = s
    return out


def _kept_layers(layers, first_layer: int):
    """The decoder layers from ``first_layer`` on, as a ModuleList that keeps their original indices as names, so
    that weight names (``layers.26.self_attn...``) stay those of the whole model: an adapter checkpoint saved while
    only the top layers run is the same as one saved from the whole model. Indexing is by position."""
    import torch

    class KeptLayers(torch.nn.ModuleList):
        def __getitem__(self, index):
            kept = list(self._modules.values())
            return torch.nn.ModuleList(kept[index]) if isinstance(index, slice) else kept[index]

    kept = KeptLayers()
    for index in range(first_layer, len(layers)):
        kept.add_module(str(index), layers[index])
    return kept


@contextlib.contextmanager
def top_only(model, first_layer: int):
    """Within the block, ``model`` holds only its decoder layers from ``first_layer`` on (under their own names, see
    :func:`_kept_layers`): call it with the trunk states as ``inputs_embeds``. The full layer list is restored on
    exit."""
    holder, name = decoder_layers(model)
    layers = getattr(holder, name)
    setattr(holder, name, _kept_layers(layers, first_layer))
    try:
        yield model
    finally:
        setattr(holder, name, layers)


def logit_gap(model, row: Sequence[int], other: Callable[[Any], Any]) -> float:
    """The largest absolute difference between ``model``'s logits on ``row`` and ``other(ids)``'s (another way to
    the same logits from the ``(1, len(row))`` id tensor), both in eval mode without gradients; the training mode is
    restored after."""
    import torch

    ids = torch.tensor([list(row)], device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            full = model(input_ids=ids, use_cache=False).logits.float()
            alternative = other(ids).float()
    finally:
        model.train(was_training)
    return float((full - alternative).abs().max())


def check_top_only(model, row: Sequence[int], first_layer: int) -> float:
    """The largest absolute logit difference between the full forward pass and trunk + top layers on ``row``;
    raises ``ValueError`` above :data:`SPLIT_TOLERANCE`, so a model the split does not fit is never trained with
    it."""
    (state,) = trunk_states(model, [row], first_layer)

    def split(ids):
        with top_only(model, first_layer):
            return model(inputs_embeds=state[None].to(ids.device), use_cache=False).logits

    gap = logit_gap(model, row, split)
    if not gap <= SPLIT_TOLERANCE:
        raise ValueError(
            f"{type(model).__name__}: trunk + top layers differ from the full forward pass by {gap:.3g} in the "
            f"logits (tolerance {SPLIT_TOLERANCE})"
        )
    return gap


def adapted_from(adapter_dir) -> int:
    """The lowest decoder layer a saved LoRA adapter changes (0 when it adapts every layer): the layers below are
    the base model's, so the base and its adapters share the trunk up to there."""
    import json
    from pathlib import Path

    layers = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("layers_to_transform")
    if isinstance(layers, int):
        return layers
    return min(layers) if layers else 0


class SharedTrunk:
    """The states entering decoder layer ``first_layer``, per token-id sequence, shared by every model that equals
    the others below that layer (one base model: its DP fine-tunes on the same rows, or the base and its adapters of
    :func:`adapted_from` >= ``first_layer``): the caller guarantees that. The first model to need a sequence's
    state computes it; a model is checked with :func:`check_top_only` (``usable``) before anything relies on the
    split."""

    def __init__(self, first_layer: int) -> None:
        import weakref

        self.first_layer = first_layer
        self._states: dict[tuple[int, ...], Any] = {}
        self._verdicts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def usable(self, model, row: Sequence[int]) -> bool:
        """Whether ``model`` reproduces its full forward pass from the trunk on ``row`` (a real text it will see);
        checked once per model, on the first row it is asked about (a model scoring its membership rows and then
        each canary's candidates is checked once, not four times)."""
        if model not in self._verdicts:
            try:
                check_top_only(model, row, self.first_layer)
                self._verdicts[model] = True
            except ValueError:
                self._verdicts[model] = False
        return self._verdicts[model]

    def states(self, model, rows: Sequence[Sequence[int]]) -> list:
        """The stored state of each row, computing the missing ones with ``model``'s own trunk."""
        missing = list(dict.fromkeys(tuple(r) for r in rows if tuple(r) not in self._states))
        for row, state in zip(missing, trunk_states(model, missing, self.first_layer), strict=True):
            self._states[row] = state
        return [self._states[tuple(r)] for r in rows]


#: the most memory (bytes) the trunk states of one fine-tune may take; a larger training set trains as before
TRUNK_STORE_LIMIT = 2 * 2**30


def trunk_dropout(model, first_layer: int) -> list[str]:
    """What would make the trunk random in training mode, so that states computed once would not stand for it: the
    names of dropout modules with ``p > 0`` outside the adapted layers, and the config's attention dropout."""
    import torch

    holder, name = decoder_layers(model)
    top = {id(m) for layer in list(getattr(holder, name))[first_layer:] for m in layer.modules()}
    found = [
        module_name
        for module_name, module in model.named_modules()
        if isinstance(module, torch.nn.Dropout) and module.p > 0 and id(module) not in top
    ]
    if float(getattr(model.config.get_text_config(), "attention_dropout", 0.0) or 0.0) > 0:
        found.append("config.attention_dropout")
    return found


class TrunkCollator:
    """A data collator that adds each row's trunk state, right-padded like its ``input_ids``, as ``inputs_embeds``
    (:func:`trainer_on_trunk`). ``input_ids`` stay in the batch: the Trainer counts the tokens seen from them."""

    def __init__(self, collator, states: dict) -> None:
        self.collator = collator
        self.states = states

    def __call__(self, examples):
        batch = self.collator(examples)
        width = batch["input_ids"].shape[1]
        lengths = [len(e["input_ids"]) for e in examples]
        mask = batch.get("attention_mask")
        if mask is not None and any(int(mask[j, :n].sum()) != n for j, n in enumerate(lengths)):
            raise RuntimeError("the collator does not right-pad: trunk states would not line up with the tokens")
        batch["inputs_embeds"] = pad_states([self.states[tuple(e["input_ids"])] for e in examples], width)
        return batch


def _embeds_over_ids(_module, args, kwargs):
    """Forward pre-hook of the decoder: with trunk states given as ``inputs_embeds``, the token ids are not embedded."""
    if kwargs.get("inputs_embeds") is not None and kwargs.get("input_ids") is not None:
        kwargs["input_ids"] = None
    return args, kwargs


@contextlib.contextmanager
def trainer_on_trunk(trainer, first_layer: int, *, device_type: str = "cpu", autocast_dtype=None):
    """Within the block, ``trainer`` (a trl ``SFTTrainer`` whose LoRA adapts layers ``first_layer`` and up) trains
    on frozen-trunk states computed once per training row, running only the adapted layers at each step; yields
    ``first_layer``, or ``None`` (and changes nothing) when the split does not apply: dropout in the trunk, a split
    that does not reproduce the full pass (:func:`check_top_only`), or states beyond :data:`TRUNK_STORE_LIMIT`.
    ``autocast_dtype`` is the training's mixed precision (the states are computed under the same autocast).
    Everything is restored on exit."""
    import torch

    model = trainer.model
    rows = [tuple(r) for r in trainer.train_dataset["input_ids"]]
    hidden = model.config.get_text_config().hidden_size
    trunk = SharedTrunk(first_layer)
    if not (
        first_layer > 0
        and rows
        and sum(map(len, rows)) * hidden * 4 <= TRUNK_STORE_LIMIT
        and not trunk_dropout(model, first_layer)
        and trunk.usable(model, rows[0])
    ):
        yield None
        return
    with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        states = trunk.states(model, rows)
    collator = trainer.data_collator
    trainer.data_collator = TrunkCollator(collator, dict(zip(rows, states, strict=True)))
    holder, _ = decoder_layers(model)
    hook = holder.register_forward_pre_hook(_embeds_over_ids, with_kwargs=True)
    try:
        with top_only(model, first_layer):
            yield first_layer
    finally:
        hook.remove()
        trainer.data_collator = collator
