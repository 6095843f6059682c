"""Speed and fidelity of reduced precision on the embedded SmolLM2-135M-Instruct: fp32, bf16 and int8 dynamic.

Run: ``python benchmarks/bench_precision.py`` (``--variants fp32 bf16``, ``--threads 1``, ``--skip-agreement``).

* Speed: the study's summarization prompts (0 shots, about 200 prompt tokens), greedy, ``--new-tokens`` new tokens
  with ``min_new_tokens`` equal to it so every sequence is equally long; generated tokens per second at batch 1
  (``--batch1-prompts`` prompts one by one) and at batch 8 (median of ``--repeats``), after one warm-up call.
* Agreement with fp32: a fixed probe set of 32 prompts built by the real tasks (fact_checking and entity_resolution
  with 6 and 5 test items, summarization with 5, each at 0 and 3 shots), greedy at each task's ``max_new_tokens``:
  fraction of identical replies, of replies with the same parsed label (``task.parse``) and mean token-level
  agreement (:func:`labscale.backends.precision.agreement`).

Prints one JSON line per variant and measurement, each with ``os.getloadavg()`` (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = {
    "fp32": "smollm2-135m?dtype=float32",
    "bf16": "smollm2-135m?dtype=bfloat16",
    "int8": "smollm2-135m?quantize=int8-dynamic",
}
PROBE = (("fact_checking", 6), ("entity_resolution", 5), ("summarization", 5))


def probe_set():
    """(conversations, decodings, parsers) of the probe set."""
    from labscale.backends import Decoding
    from labscale.tasks import get_task

    conversations, decodings, parsers = [], [], []
    for name, n in PROBE:
        task = get_task(name)
        data = task.load("offline")
        for shots in (0, 3):
            for example in data.splits["test"][:n]:
                conversations.append(task.messages(example, task.shots(data, shots)))
                decodings.append(Decoding(max_new_tokens=task.max_new_tokens))
                parsers.append(task.parse)
    return conversations, decodings, parsers


def speed_prompts() -> list:
    from labscale.tasks import get_task

    task = get_task("summarization")
    data = task.load("offline")
    return [task.messages(example, []) for example in data.splits["test"][:8]]


def tokens_per_s(backend, conversations, config) -> float:
    import torch

    prompts = [backend.prompt_text(c) for c in conversations]
    encoded = backend.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        out = backend.model.generate(**encoded, generation_config=config)
    elapsed = time.perf_counter() - start
    return (out.sequences.shape[1] - encoded["input_ids"].shape[1]) * len(conversations) / elapsed


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(threads: int = 0) -> dict:
    """Torch threads (set first when ``threads``), CPU count, native bf16, the kernels' ISA, and versions."""
    import torch

    from labscale.backends.precision import cpu_supports_bf16

    if threads:
        torch.set_num_threads(threads)
    return {
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch1-prompts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()

    from labscale.backends import Decoding, load_backend
    from labscale.backends.precision import agreement

    machine = machine_info(args.threads)
    conversations = speed_prompts()
    backends = {}
    for name in args.variants:
        start = time.perf_counter()
        backend = backends[name] = load_backend(VARIANTS[name])  # no cache: every call generates
        backend.load()
        load_s = time.perf_counter() - start
        config = backend.generation_config(Decoding(max_new_tokens=args.new_tokens))
        config.min_new_tokens = args.new_tokens
        config.output_scores = False
        tokens_per_s(backend, conversations[:1], config)  # warm-up
        before = load_average()
        single = statistics.mean(tokens_per_s(backend, [c], config) for c in conversations[: args.batch1_prompts])
        during = load_average()
        batched = [tokens_per_s(backend, conversations, config) for _ in range(args.repeats)]
        record = {
            "variant": name,
            "model": VARIANTS[name],
            "dtype": backend.identity()["dtype"],
            "load_s": round(load_s, 1),
            "tokens_per_s_batch1": round(single, 1),
            "tokens_per_s_batch8_median": round(statistics.median(batched), 1),
            "tokens_per_s_batch8_all": [round(r, 1) for r in batched],
            "new_tokens_per_sequence": args.new_tokens,
            "load_average": [before, during, load_average()],
            **machine,
        }
        print(json.dumps(record), flush=True)
    if args.skip_agreement or "fp32" not in backends:
        return
    import tempfile

    from labscale.cache import ResponseCache

    probe, decodings, parsers = probe_set()
    scratch = tempfile.TemporaryDirectory()
    backends["fp32"].cache = ResponseCache(Path(scratch.name) / "fp32.sqlite")  # fp32 replies generated once
    for name, backend in backends.items():
        if name == "fp32":
            continue
        start = time.perf_counter()
        result = agreement(backends["fp32"], backend, probe, None, decodings=decodings, parse=parsers)
        record = {
            "variant": name,
            "agreement_with": "fp32",
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "replies"},
            "seconds": round(time.perf_counter() - start, 1),
            "load_average": load_average(),
            **machine,
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
