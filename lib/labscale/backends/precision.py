"""Reduced-precision local inference: CPU bf16 detection, int8 dynamic quantization, and agreement with fp32.

Measured on the embedded SmolLM2-135M-Instruct (``benchmarks/bench_precision.py``; a shared 2-core Sapphire Rapids
VM with ``avx512_bf16``/``amx_bf16``, torch 2.13, 1 thread, summarization prompts of about 200 tokens, greedy, 64
new tokens; load averages 3-5, so the numbers are noisy):

=========================  ===============  ===============  ==========================================
variant                    batch 1 (tok/s)  batch 8 (tok/s)  agreement with fp32 (32 probe prompts)
=========================  ===============  ===============  ==========================================
fp32 (``dtype=auto``)      8.5-14.0         22.7-38.8        --
bf16 (``dtype=bfloat16``)  8.8-15.4         43.7-73.7        72-75 % identical, 75-81 % same label
int8 (``quantize=int8-``   16.7-27.4        48.6-75.4        3-6 % identical, 31-41 % same label
``dynamic``)
=========================  ===============  ===============  ==========================================

bf16 roughly doubles batched throughput (AMX bf16 prefill and batched decode) and is about even with fp32 at
batch 1; its replies keep the classification labels (fact checking, entity resolution: 100 % same label on the
probe) and drift in long summaries (40 % identical). ``dtype=auto-bf16`` picks it where :func:`cpu_supports_bf16`
finds native bf16, and fp32 elsewhere (emulated bf16 is slower than fp32); it is the embedded model's inference
default (:data:`EMBEDDED_DTYPE`, applied by :func:`labscale.backends.load_backend`). ``dtype=auto`` stays fp32 on
CPU for every other model, and training, merging and log-probability scoring keep fp32. bf16 is not bit-exact under
a change of kernel shape: a reused shared prefix gave the same 64 labels on 3-shot fact checking and entity
resolution, and 23 of 32 identical 3-shot summaries (32 new tokens).

int8 dynamic quantization is the fastest at batch 1, but it quantizes activations per tensor at run time, and this
small model's activation outliers make its replies unusable (repeated fragments instead of labels or summaries): it
is an explicit option for larger models, to be checked with :func:`agreement` before use, never a default. Both
change outputs, so both are part of the backend identity (the resolved dtype, and ``quantize`` when on), and a cache
never mixes precisions. ``torch.compile`` with a static KV cache took 260 s to compile and then decoded no faster
(11 tok/s in bf16 at batch 1), so it is not used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .hf import common_prefix_length

#: /proc/cpuinfo flags that mean native bf16 arithmetic (AVX512-BF16 dot products, AMX bf16 tiles)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

#: ``dtype`` choices of the hf backend; ``auto-bf16`` is bf16 where the hardware has it natively, else fp32
DTYPES = ("auto", "auto-bf16", "float32", "bfloat16", "float16")

#: the embedded model's ``dtype`` when the model string names none (and no ``quantize``): bf16 on a CPU with native
#: bf16, fp32 elsewhere; ``?dtype=float32`` asks for fp32 everywhere (see the module docstring for the measurements)
EMBEDDED_DTYPE = "auto-bf16"

#: ``quantize`` choices of the hf backend: ``int8-dynamic`` is torch's dynamic int8 quantization of every
#: ``nn.Linear`` (int8 weights, activations quantized per call), CPU and fp32 only
QUANTIZE = ("none", "int8-dynamic")


@functools.lru_cache(maxsize=8)
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty where the file is missing: not Linux); read
    once per file, since ``dtype=auto-bf16`` resolves them in the backend identity of every request."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 natively (``avx512_bf16`` or ``amx_bf16``), so that bf16 weights are fast
    rather than emulated. Elsewhere torch still runs bf16, but through conversions that make it slower than fp32."""
    return bool(cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS))


def _tokens(backend, text: str) -> list[int]:
    return list(backend.tokenizer(text, add_special_tokens=False)["input_ids"])


def agreement(
    backend_a,
    backend_b,
    conversations: Sequence[Any],
    decoding,
    *,
    parse: Callable[[str], str] | Sequence[Callable[[str], str]] | None = None,
    decodings: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """How closely ``backend_b`` reproduces ``backend_a`` (for example bf16 or int8 against fp32) on
    ``conversations`` under ``decoding`` (use greedy decoding: sampled replies differ by chance).

    Returns ``n``, ``identical`` (fraction of replies with the same text), ``token_agreement`` (mean over replies
    of the fraction of positions, out of the longer reply, where the two replies -- tokenized by ``backend_a`` --
    hold the same token), ``prefix_agreement`` (mean length of the common token prefix over the longer reply's)
    and, with ``parse`` (one parser, or one per conversation, e.g. ``task.parse``), ``same_label`` (fraction of
    replies that parse to the same label). ``decodings`` gives one decoding per conversation instead (tasks with
    different budgets); replies are generated in groups of equal decoding. ``replies`` lists the pairs.
    """
    conversations = list(conversations)
    per_item = list(decodings) if decodings is not None else [decoding] * len(conversations)
    if len(per_item) != len(conversations):
        raise ValueError(f"{len(per_item)} decodings for {len(conversations)} conversations")
    texts: dict[str, list[str]] = {}
    for name, backend in (("a", backend_a), ("b", backend_b)):
        out = [""] * len(conversations)
        for dec in dict.fromkeys(per_item):  # in first-seen order, each decoding once
            idx = [i for i, d in enumerate(per_item) if d == dec]
            gens = backend.generate([conversations[i] for i in idx], dec, progress=False)
            for i, g in zip(idx, gens, strict=True):
                out[i] = g.text
        texts[name] = out
    token_scores, prefix_scores, same_text = [], [], []
    for ta, tb in zip(texts["a"], texts["b"], strict=True):
        a, b = _tokens(backend_a, ta), _tokens(backend_a, tb)
        longest = max(len(a), len(b))
        if longest == 0:
            token_scores.append(1.0)
            prefix_scores.append(1.0)
        else:
            token_scores.append(sum(x == y for x, y in zip(a, b, strict=False)) / longest)
            prefix_scores.append(common_prefix_length([a, b]) / longest)
        same_text.append(ta == tb)
    n = len(conversations)
    result: dict[str, Any] = {
        "n": n,
        "identical": sum(same_text) / n if n else float("nan"),
        "token_agreement": sum(token_scores) / n if n else float("nan"),
        "prefix_agreement": sum(prefix_scores) / n if n else float("nan"),
    }
    if parse is not None:
        parsers = list(parse) if isinstance(parse, Sequence) else [parse] * n
        same = [p(ta) == p(tb) for p, ta, tb in zip(parsers, texts["a"], texts["b"], strict=True)]
        result["same_label"] = sum(same) / n if n else float("nan")
    result["replies"] = list(zip(texts["a"], texts["b"], strict=True))
    return result


__all__ = ["BF16_CPU_FLAGS", "DTYPES", "QUANTIZE", "agreement", "cpu_flags", "cpu_supports_bf16"]
