"""The frozen trunk, computed once: when LoRA adapts only the top layers of a decoder (``top_layers``), the layers
below never change while training, so the hidden state that enters the first adapted layer is a fixed function of
each training row. :func:`trunk_states` computes it once per row (for every epoch, and for every run on the same
rows, such as the privacy sweep's budgets); :func:`top_only` runs the model from there, feeding those states as
``inputs_embeds`` to the top layers alone. :func:`check_top_only` verifies that the split reproduces the full
forward pass on a real row before it is used (an architecture that rescales ``inputs_embeds`` would not).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
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
                width = max(len(rows[i]) for i in chunk)
                ids = torch.zeros((len(chunk), width), dtype=torch.long)
                attention = torch.zeros((len(chunk), width), dtype=torch.long)
                for j, i in enumerate(chunk):
                    ids[j, : len(rows[i])] = torch.tensor(rows[i])
                    attention[j, : len(rows[i])] = 1
                with contextlib.suppress(_Captured):
                    model(input_ids=ids.to(device), attention_mask=attention.to(device), use_cache=False)
                hidden = captured.pop("h").float().cpu()
                for j, i in enumerate(chunk):
                    states[i] = hidden[j, : len(rows[i])].clone()
    finally:
        handle.remove()
        model.train(was_training)
    return states


def pad_states(states: Sequence, width: int):
    """Right-pad per-row trunk states (``[len, hidden]``) with zeros into one ``[rows, width, hidden]`` tensor."""
    import torch

    hidden = states[0].shape[-1] if states else 1
    out = torch.zeros((len(states), width, hidden), dtype=states[0].dtype if states else torch.float32)
    for i, s in enumerate(states):
        out[i, : len(s)] = s
    return out


@contextlib.contextmanager
def top_only(model, first_layer: int):
    """Within the block, ``model`` holds only its decoder layers from ``first_layer`` on: call it with the trunk
    states as ``inputs_embeds``. The full layer list is restored on exit (before saving an adapter, whose weight
    names carry the layer indices)."""
    holder, name = decoder_layers(model)
    layers = getattr(holder, name)
    setattr(holder, name, layers[first_layer:])
    try:
        yield model
    finally:
        setattr(holder, name, layers)


def check_top_only(model, row: Sequence[int], first_layer: int) -> float:
    """The largest absolute logit difference between the full forward pass and trunk + top layers on ``row``;
    raises ``ValueError`` above :data:`SPLIT_TOLERANCE`, so a model the split does not fit is never trained with
    it."""
    import torch

    (state,) = trunk_states(model, [row], first_layer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            full = model(input_ids=torch.tensor([list(row)], device=device), use_cache=False).logits.float()
            with top_only(model, first_layer):
                split = model(inputs_embeds=state[None].to(device), use_cache=False).logits.float()
    finally:
        model.train(was_training)
    gap = float((full - split).abs().max())
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
        self.first_layer = first_layer
        self._states: dict[tuple[int, ...], Any] = {}

    def usable(self, model, row: Sequence[int]) -> bool:
        """Whether ``model`` reproduces its full forward pass from the trunk on ``row`` (a real text it will see)."""
        try:
            check_top_only(model, row, self.first_layer)
        except ValueError:
            return False
        return True

    def states(self, model, rows: Sequence[Sequence[int]]) -> list:
        """The stored state of each row, computing the missing ones with ``model``'s own trunk."""
        missing = list(dict.fromkeys(tuple(r) for r in rows if tuple(r) not in self._states))
        for row, state in zip(missing, trunk_states(model, missing, self.first_layer), strict=True):
            self._states[row] = state
        return [self._states[tuple(r)] for r in rows]
