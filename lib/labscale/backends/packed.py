"""bf16 linear layers on CPU with their weights reordered for oneDNN once per generate call.

On a CPU, ``F.linear`` of bf16 tensors goes to oneDNN with the weight in its plain row-major layout, and pays for
that layout in every call; with the weight reordered into oneDNN's own layout beforehand (what torch.compile's
weight prepacking does), the same product comes back with the same bits, faster. Measured on the embedded
SmolLM2-135M (bf16, 1 thread, this project's 2-core CPU): its output head on one row 6.8 -> 3.7 ms, on 32 rows
14.3 -> 10.4 ms; greedy replies of 48 tokens with every linear layer reordered, batch 1: 3.02 -> 1.89 s, batch 8:
3.67 -> 2.98 s, batch 32: 8.19 -> 7.09 s, every token identical.

:func:`packed_linears` reorders at the start of a call and restores the layers at its end (0.17 s for the embedded
model), so a model changed between calls (an adapter merged into it, a weight edited for an ablation) never runs on
stale weights, and nothing outside the call sees a changed module. It first checks, for each weight shape, that the
reordered product equals ``F.linear`` bit for bit on this machine (from one-row steps to prefill-sized blocks, once
per process), and leaves every layer alone if one does not, so replies, caches and identities are unchanged. fp32 is
left alone too: there the reordered product rounds differently. A layer asked for gradients inside the call runs
``F.linear``. The reordered copy doubles the layers' memory for the call, so a model whose layers would take more
than half of the memory available is left alone.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any


def packable_layers(model: Any) -> list[Any]:
    """The model's plain ``nn.Linear`` layers holding bf16 weights on the CPU (peft's LoRA base layers included;
    quantized layers, which are other classes, are not)."""
    import torch

    return [
        module
        for module in model.modules()
        if type(module) is torch.nn.Linear
        and module.weight.dtype == torch.bfloat16
        and module.weight.device.type == "cpu"
    ]


def _packed_forward(module: Any, packed: Any, x: Any) -> Any:
    import torch
    import torch.nn.functional as F

    needs_grad = torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad)
    if needs_grad or x.dtype != torch.bfloat16 or x.device.type != "cpu":
        return F.linear(x, module.weight, module.bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, module.bias, "none", [], "")


#: row counts of the bit-equality probe: one-token steps, small batches, and a prefill-sized block of rows
PROBE_ROWS = (1, 3, 40, 300)
#: the probe's verdict per (out features, in features, bias, torch threads), kept for the process: which kernel
#: oneDNN picks, and so how it accumulates, depends on those and on the machine, not on the weights' values
_VERDICTS: dict[tuple[Any, ...], bool] = {}


def _reordered(module: Any) -> Any:
    """``module``'s weight in oneDNN's layout (call it under ``torch.inference_mode``)."""
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), None)


def _same_bits(layers: list[Any]) -> bool:
    """Whether the reordered product equals ``F.linear`` bit for bit on :data:`PROBE_ROWS` random rows, for one
    layer of each weight shape; probed once per shape and thread count in a process (the embedded model's five
    shapes: 0.5 s on 1 thread, most of it its output head; each later call's reordering then takes 0.17 s). Only
    the probed layer is reordered here, so a shape already judged unequal costs no reordering at all."""
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    for module in layers:
        key = (*module.weight.shape, module.bias is not None, threads)
        if key not in _VERDICTS:
            with torch.inference_mode():
                weight = _reordered(module)
                _VERDICTS[key] = all(
                    torch.equal(_packed_forward(module, weight, x), F.linear(x, module.weight, module.bias))
                    for x in (
                        torch.randn(rows, module.in_features, generator=generator).to(torch.bfloat16)
                        for rows in PROBE_ROWS
                    )
                )
        if not _VERDICTS[key]:
            return False
    return True


def _fits_twice(layers: list[Any]) -> bool:
    """Whether a reordered copy of ``layers`` takes at most half of the memory available now."""
    import psutil

    copy_bytes = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    return copy_bytes <= psutil.virtual_memory().available / 2


@contextlib.contextmanager
def packed_linears(model: Any) -> Iterator[int]:
    """Run ``model``'s bf16 CPU linear layers on reordered weights inside the block; yields how many layers run so
    (0 where none qualify, oneDNN cannot reorder, the copy would not fit in memory, or the reordered product is not
    bit-equal here)."""
    import torch

    layers = packable_layers(model)
    packed: list[Any] = []
    supported = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if layers and supported and _fits_twice(layers):
        try:  # the probe first: every layer is reordered only where every shape gives the same bits
            if _same_bits(layers):
                with torch.inference_mode():
                    packed = [_reordered(m) for m in layers]
        except RuntimeError:
            packed = []
    if not packed:
        yield 0
        return
    try:
        for module, weight in zip(layers, packed, strict=True):
            module.forward = functools.partial(_packed_forward, module, weight)
        yield len(layers)
    finally:
        for module in layers:
            module.__dict__.pop("forward", None)


__all__ = ["packable_layers", "packed_linears"]
