"""Shared-prefix reuse in the HF backend on the embedded SmolLM2-135M-Instruct: few-shot generation with the
prefix's KV cache reused (``prefix_cache=auto``) against whole prompts (``prefix_cache=off``).

Run: ``python benchmarks/bench_prefix_cache.py`` (options: ``--items 32 --batch-sizes 1 8 --tasks
fact_checking:10 summarization:64 --shots 3``; ``--prefix-lengths 32 64 128`` times synthetic prompts whose
shared prefix has about that many tokens, the measurement behind ``PREFIX_MIN_TOKENS``).
Every call bypasses the response cache (cache=None) and starts from a fresh backend, so the one-off prefix
computation is inside the time. Off and on alternate per repeat, so a change in machine load hits both alike.
Prints one JSON line per (task, batch size): seconds and generated tokens/s off and on, the speed-up, prompt
tokens and reused prompt tokens, whether the replies were identical, and ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def time_generate(conversations, decoding, options: str) -> tuple[float, list, dict]:
    from labscale.backends import load_backend

    backend = load_backend(f"smollm2-135m?{options}")  # no cache: every call generates
    backend.load()
    start = time.perf_counter()
    replies = backend.generate(conversations, decoding, progress=False)
    return time.perf_counter() - start, replies, backend.runtime_info()["prefix_reuse"]


def compare(label: dict, conversations, decoding, batch_size: int, repeats: int) -> dict:
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {"off": [], "auto": []}
    replies, reuse = {}, {}
    for _ in range(repeats):
        for mode in ("off", "auto"):
            elapsed, replies[mode], reuse[mode] = time_generate(
                conversations, decoding, f"batch_size={batch_size}&prefix_cache={mode}"
            )
            seconds[mode].append(elapsed)
    generated = sum(g.completion_tokens for g in replies["off"])
    off, on = statistics.median(seconds["off"]), statistics.median(seconds["auto"])
    return {
        **label,
        "items": len(conversations),
        "batch_size": batch_size,
        "max_new_tokens": decoding.max_new_tokens,
        "prompt_tokens": sum(g.prompt_tokens for g in replies["off"]),
        "reused_prompt_tokens": reuse["auto"]["reused_prompt_tokens"],
        "prefix_computations": reuse["auto"]["prefix_computations"],
        "generated_tokens": generated,
        "seconds_off": [round(s, 2) for s in seconds["off"]],
        "seconds_on": [round(s, 2) for s in seconds["auto"]],
        "tokens_per_s_off": round(generated / off, 2),
        "tokens_per_s_on": round(generated / on, 2),
        "speedup": round(off / on, 2),
        "identical": [(g.text, g.completion_tokens) for g in replies["off"]]
        == [(g.text, g.completion_tokens) for g in replies["auto"]],
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--tasks", nargs="*", default=["fact_checking:10", "summarization:64"], help="task:max_new_tokens"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--prefix-lengths", type=int, nargs="*", default=[], help="synthetic shared-prefix sizes")
    args = parser.parse_args()

    import torch

    from labscale.backends import Decoding
    from labscale.tasks import get_task

    machine = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine()}
    for spec in args.tasks:
        name, _, budget = spec.partition(":")
        task = get_task(name)
        data = task.load("offline")
        shots = task.shots(data, args.shots)
        conversations = [task.messages(example, shots) for example in data.splits["test"][: args.items]]
        decoding = Decoding(max_new_tokens=int(budget or task.max_new_tokens))
        for batch_size in args.batch_sizes:
            label = {"task": name, "shots": args.shots, **machine}
            print(json.dumps(compare(label, conversations, decoding, batch_size, args.repeats)), flush=True)
    questions = [
        "What is the capital of France?",
        "Name one primary colour.",
        "What is 2 + 2?",
        "Which planet is the largest?",
        "What do bees make?",
        "How many legs does a spider have?",
        "What is frozen water called?",
        "Which ocean is the largest?",
    ]
    if args.prefix_lengths:
        from labscale.backends import hf

        hf.PREFIX_MIN_TOKENS = 1  # reuse whatever is shared, to see where reuse starts to pay
    for length in args.prefix_lengths:  # the SmolLM2 template's system message is about 30 tokens of it
        shared = "Answer briefly and exactly. " * max(0, (length - 30) // 6)
        conversations = [[{"role": "user", "content": shared + q}] for q in questions]
        for batch_size in args.batch_sizes:
            label = {"task": f"synthetic-prefix-{length}", **machine}
            row = compare(label, conversations, Decoding(max_new_tokens=4), batch_size, max(args.repeats, 3))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
