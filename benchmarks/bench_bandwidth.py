"""Batch-1 decoding against the machine's memory bandwidth: how close the HF backend comes to the limit.

Run: ``python benchmarks/bench_bandwidth.py`` (``--threads 1``, ``--dtypes float32 bfloat16``).

At batch 1 every decoding step reads every weight once (the tied output head reads the whole embedding matrix), so
``read bandwidth / weight bytes`` tokens per second is the most a step can do. This script measures:

* the read bandwidth: ``tensor.sum()`` over a 512 MiB float32 tensor (much larger than the caches), median of 5;
* per dtype, the decode rate of the embedded SmolLM2-135M-Instruct at batch 1: greedy, a short chat prompt,
  ``min_new_tokens`` equal to the budget, timed for 1 and for ``--new-tokens`` tokens so that the prefill cancels
  out (``(n - 1) / (t_n - t_1)``), median of ``--repeats``; with the linear layers as loaded (``plain``) and, where
  any qualify (bf16 on a CPU whose oneDNN computes bf16), on weights reordered for oneDNN as the backend's
  ``packed_weights=auto`` runs them (``packed``, :mod:`labscale.backends.packed`);

and prints one JSON line per dtype and weights: weight bytes, the limit in tokens/s, the measured rate and their
ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def read_bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    """Median read bandwidth (GB/s) of summing a ``mib`` MiB float32 tensor."""
    import torch

    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    x.sum()  # first touch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - start)
    return x.numel() * 4 / statistics.median(times) / 1e9


def decode_rate(backend, new_tokens: int, repeats: int, packed: bool = False) -> tuple[float, int]:
    """Batch-1 decode tokens/s with the prefill cancelled out: ``(n - 1) / (t_n - t_1)``, and how many linear layers
    ran on reordered weights (``packed``; 0 where :func:`labscale.backends.packed.packed_linears` packed none)."""
    import contextlib

    import torch

    from labscale.backends import Decoding
    from labscale.backends.packed import packed_linears

    prompt = backend.prompt_text([{"role": "user", "content": "Explain in one sentence why the sky is blue."}])
    encoded = backend.tokenizer([prompt], return_tensors="pt", add_special_tokens=False)

    layers = []

    def timed(n: int) -> float:
        config = backend.generation_config(Decoding(max_new_tokens=n))
        config.min_new_tokens = n
        start = time.perf_counter()
        with torch.inference_mode(), packed_linears(backend.model) if packed else contextlib.nullcontext(0) as count:
            backend.model.generate(**encoded, generation_config=config)
        layers.append(count)
        return time.perf_counter() - start

    timed(new_tokens)  # warm-up
    rates = [(new_tokens - 1) / (timed(new_tokens) - timed(1)) for _ in range(repeats)]
    return statistics.median(rates), min(layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from labscale.backends import load_backend
    from labscale.backends.packed import packable_layers

    torch.set_num_threads(args.threads)
    bandwidth = read_bandwidth_gbs()
    for dtype in args.dtypes:
        backend = load_backend(f"smollm2-135m?dtype={dtype}")  # no cache: every call generates
        backend.load()
        weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())
        limit = bandwidth * 1e9 / weight_bytes
        for weights in ("plain", "packed") if packable_layers(backend.model) else ("plain",):
            rate, packed_layers = decode_rate(backend, args.new_tokens, args.repeats, packed=weights == "packed")
            print(
                json.dumps(
                    {
                        "benchmark": "bandwidth",
                        "dtype": dtype,
                        "weights": weights,
                        "packed_layers": packed_layers,  # 0 in a "packed" row: this machine packed nothing
                        "threads": args.threads,
                        "read_bandwidth_gbs": round(bandwidth, 2),
                        "weight_mb": round(weight_bytes / 1e6, 1),
                        "limit_tokens_per_s": round(limit, 1),
                        "decode_tokens_per_s": round(rate, 1),
                        "fraction_of_limit": round(rate / limit, 3),
                        "load_average": os.getloadavg()[0],
                        "machine": platform.platform(),
                        "torch": torch.__version__,
                    }
                ),
                flush=True,
            )
        backend.close()


if __name__ == "__main__":
    main()
