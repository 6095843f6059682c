"""Two ways through labscale's HF backend on the same greedy job, on the embedded SmolLM2-135M-Instruct: the decoding
loop (``--compare loop``: finished replies leaving the batch against transformers' greedy ``generate``, every row
decoded to the longest reply's end) or the linear layers' weights (``--compare packed``: ``packed_weights=off``
against ``auto``, bf16 weights reordered for oneDNN once per call).

Run: ``python benchmarks/bench_greedy.py`` (options: ``--compare loop``, ``--runs summarization:1 summarization:0
fact_checking:0`` (task:shots), ``--items 60``, ``--new-tokens 64`` (0: each task's budget), ``--dtype bfloat16``,
``--batch-size 32``, ``--threads 1``, ``--repeats 2``).

Both modes run the same backend, prompts, batches and prefix reuse; only the compared part differs
(:func:`labscale.backends.greedy.greedy_decode` or :func:`labscale.backends.greedy.generate_decode`; the
``packed_weights`` option). Each call starts from a fresh backend without a response cache; the modes alternate per
repeat, so a change in machine load hits both. Prints one JSON line per run: seconds per mode, the speed-up of the
medians, the replies' mean and maximum length, how many replies are identical, and ``os.getloadavg()`` before and
after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench_precision import load_average, machine_info  # this folder is on sys.path when a script here runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")


#: per comparison, the slower-expected mode first
MODES = {"loop": ("generate", "greedy"), "packed": ("off", "auto")}


def timed(conversations, decoding, spec: str, mode: str):
    from labscale.backends import greedy, hf, load_backend

    hf.greedy_decode = greedy.generate_decode if mode == "generate" else greedy.greedy_decode
    if mode in MODES["packed"]:
        spec = f"{spec}&packed_weights={mode}"
    backend = load_backend(spec, cache=None)
    backend.load()
    start = time.perf_counter()
    replies = backend.generate(conversations, decoding, progress=False)
    return time.perf_counter() - start, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default="loop", choices=list(MODES))
    parser.add_argument("--runs", nargs="+", default=["summarization:1", "summarization:0", "fact_checking:0"])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--new-tokens", type=int, default=64, help="0: each task's own budget")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from labscale.backends import Decoding
    from labscale.tasks import get_task

    machine = machine_info(args.threads)
    spec = f"smollm2-135m?dtype={args.dtype}&batch_size={args.batch_size}"
    slow, fast = MODES[args.compare]
    for run in args.runs:
        name, _, shots = run.partition(":")
        task = get_task(name)
        data = task.load("offline")
        fixed = task.shots(data, int(shots or 0))
        conversations = [task.messages(example, fixed) for example in data.splits["test"][: args.items]]
        decoding = Decoding(max_new_tokens=args.new_tokens or task.max_new_tokens)
        before = load_average()
        seconds: dict[str, list[float]] = {slow: [], fast: []}
        replies = {}
        for _ in range(args.repeats):
            for mode in seconds:
                elapsed, replies[mode] = timed(conversations, decoding, spec, mode)
                seconds[mode].append(round(elapsed, 2))
        lengths = [g.completion_tokens for g in replies[slow]]
        same = sum(
            (a.text, a.completion_tokens) == (b.text, b.completion_tokens)
            for a, b in zip(replies[slow], replies[fast], strict=True)
        )
        same_logprob = sum(
            a.extra["logprob"] == b.extra["logprob"] for a, b in zip(replies[slow], replies[fast], strict=True)
        )
        row = {
            "task": name,
            "shots": int(shots or 0),
            "items": len(conversations),
            "compare": args.compare,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
            "max_new_tokens": decoding.max_new_tokens,
            "mean_reply_tokens": round(statistics.mean(lengths), 1),
            "max_reply_tokens": max(lengths),
            **{f"seconds_{mode}": times for mode, times in seconds.items()},
            "speedup": round(statistics.median(seconds[slow]) / statistics.median(seconds[fast]), 2),
            "identical_replies": f"{same}/{len(lengths)}",
            "identical_logprobs": f"{same_logprob}/{len(lengths)}",
            "loadavg_before": before,
            "loadavg_after": load_average(),
            **machine,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
