"""Greedy decoding with finished replies leaving the batch (labscale's HF backend) against transformers' greedy
``generate`` (every row decoded to the longest reply's end), on the embedded SmolLM2-135M-Instruct.

Run: ``python benchmarks/bench_greedy.py`` (options: ``--runs summarization:1 summarization:0 fact_checking:0``
(task:shots), ``--items 60``, ``--new-tokens 64`` (0: each task's budget), ``--dtype bfloat16``, ``--threads 1``,
``--repeats 2``).

Both modes run the same backend, prompts, batches and prefix reuse; only the decoding loop differs
(:func:`labscale.backends.greedy.greedy_decode` or :func:`labscale.backends.greedy.generate_decode`). Each call starts
from a fresh backend without a response cache; the modes alternate per repeat, so a change in machine load hits both.
Prints one JSON line per run: seconds per mode, the speed-up of the medians, the replies' mean and maximum length,
how many replies are identical, and ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench_precision import load_average, machine_info  # this folder is on sys.path when a script here runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(conversations, decoding, spec: str, mode: str):
    from labscale.backends import greedy, hf, load_backend

    hf.greedy_decode = greedy.greedy_decode if mode == "greedy" else greedy.generate_decode
    backend = load_backend(spec, cache=None)
    backend.load()
    start = time.perf_counter()
    replies = backend.generate(conversations, decoding, progress=False)
    return time.perf_counter() - start, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["summarization:1", "summarization:0", "fact_checking:0"])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--new-tokens", type=int, default=64, help="0: each task's own budget")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from labscale.backends import Decoding
    from labscale.tasks import get_task

    machine = machine_info(args.threads)
    spec = f"smollm2-135m?dtype={args.dtype}"
    for run in args.runs:
        name, _, shots = run.partition(":")
        task = get_task(name)
        data = task.load("offline")
        fixed = task.shots(data, int(shots or 0))
        conversations = [task.messages(example, fixed) for example in data.splits["test"][: args.items]]
        decoding = Decoding(max_new_tokens=args.new_tokens or task.max_new_tokens)
        before = load_average()
        seconds: dict[str, list[float]] = {"generate": [], "greedy": []}
        replies = {}
        for _ in range(args.repeats):
            for mode in seconds:
                elapsed, replies[mode] = timed(conversations, decoding, spec, mode)
                seconds[mode].append(round(elapsed, 2))
        lengths = [g.completion_tokens for g in replies["generate"]]
        same = sum(
            (a.text, a.completion_tokens) == (b.text, b.completion_tokens)
            for a, b in zip(replies["generate"], replies["greedy"], strict=True)
        )
        row = {
            "task": name,
            "shots": int(shots or 0),
            "items": len(conversations),
            "dtype": args.dtype,
            "max_new_tokens": decoding.max_new_tokens,
            "mean_reply_tokens": round(statistics.mean(lengths), 1),
            "max_reply_tokens": max(lengths),
            "seconds_generate": seconds["generate"],
            "seconds_greedy": seconds["greedy"],
            "speedup": round(statistics.median(seconds["generate"]) / statistics.median(seconds["greedy"]), 2),
            "identical_replies": f"{same}/{len(lengths)}",
            "loadavg_before": before,
            "loadavg_after": load_average(),
            **machine,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
