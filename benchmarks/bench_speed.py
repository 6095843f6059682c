"""Side by side in one run: labscale's HF backend, a plain transformers ``generate`` loop and lm-evaluation-harness's
``hf`` model, on the same prompts and the same weights, in fp32, bf16 and int8; and labscale's shared-prefix reuse
on and off.

Run: ``python benchmarks/bench_speed.py`` (options: ``--precisions fp32 bf16 int8``, ``--batch-sizes 1 8``,
``--prompts 8 32`` (prompts at each batch size), ``--new-tokens 64``, ``--few-shot-prompts 32``, ``--repeats 3``:
rounds of the zero-shot rows, whose medians the table shows; a single round of a few prompts moved lm-eval's rate at
batch 1 from 15.0 to 21.2 tokens/s between runs).

* Weights: each precision is loaded once by labscale (``smollm2-135m?dtype=...`` or ``?quantize=int8-dynamic``);
  the plain loop and lm-eval's ``HFLM`` are given that same model object and tokenizer, so the engines differ only
  in how they batch and generate. ``default`` compares what each gives out of the box: labscale's default (bf16 on
  a CPU with native bf16) against the others on the converted folder's fp32 weights.
* Zero-shot rows: the summarization task's prompts (0 shots, about 210 prompt tokens through the chat template),
  greedy, at most ``--new-tokens`` new tokens, stopping at the end-of-turn token. Engines run one after the other
  on the same prompts; the speed ratio is the ratio of their wall times for the same job.
  labscale runs twice: with shared-prefix reuse off (the same work as the others) and as it comes (``auto``: the
  system message and instruction every prompt shares are prefilled once); the second's ratio to lm-eval is one of
  tokens per second, and the row counts its replies equal to those without reuse (in bf16 a reused prefix rounds
  like any change of kernel shape, so some long summaries drift).
* Few-shot rows: the fact-checking task's 3-shot prompts (about 750 tokens, of which about 680 are shared),
  labscale with ``prefix_cache=off`` and ``auto`` (and how many replies are equal), beside lm-eval on the same
  prompts.
* Every row records ``os.getloadavg()`` before and after: on a shared machine the numbers are not comparable.

Prints one JSON line per measurement, then a markdown table of the ratios (the README's performance table).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench_precision import load_average, machine_info  # this folder is on sys.path when a script here runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRECISIONS = {
    "default": "smollm2-135m",  # labscale's default (bf16 on a CPU with native bf16) beside the others' fp32
    "fp32": "smollm2-135m?dtype=float32",
    "bf16": "smollm2-135m?dtype=bfloat16",
    "int8": "smollm2-135m?quantize=int8-dynamic",
}
#: "labscale" runs with shared-prefix reuse off, so that all three do the same work; "labscale-reuse" is labscale as it
#: comes (``prefix_cache=auto``: the system message and instruction that every zero-shot prompt shares, about 53 of
#: 207 tokens, are prefilled once)
ENGINES = ("labscale", "labscale-reuse", "transformers", "lm-eval")


def task_prompts(name: str, shots: int, n: int) -> tuple[list, int]:
    """``n`` test prompts of the offline task ``name`` at ``shots`` shots, and the task's token budget."""
    from labscale.tasks import get_task

    task = get_task(name)
    data = task.load("offline")
    fixed = task.shots(data, shots)
    return [task.messages(example, fixed) for example in data.splits["test"][:n]], task.max_new_tokens


def run_labscale(
    backend, conversations, max_new_tokens: int, batch_size: int, prefix: str = "off", texts: list | None = None
) -> int:
    """labscale's backend at exactly ``batch_size`` prompts a batch; the replies' texts go to ``texts`` when given."""
    from labscale.backends import Decoding

    backend.batch_size, backend.batch_tokens, backend.prefix_cache = batch_size, 10**9, prefix  # exactly batch_size
    backend._prefix_kv.clear()  # every timed call computes its own prefix
    replies = backend.generate(conversations, Decoding(max_new_tokens=max_new_tokens), progress=False)
    if texts is not None:
        texts.extend(g.text for g in replies)
    return sum(g.completion_tokens for g in replies)


def run_labscale_reuse(backend, conversations, max_new_tokens: int, batch_size: int, texts: list | None = None) -> int:
    return run_labscale(backend, conversations, max_new_tokens, batch_size, "auto", texts)


def run_transformers(backend, conversations, max_new_tokens: int, batch_size: int) -> int:
    """What a user writes by hand: the chat template, left padding, ``generate`` batch by batch in input order."""
    import torch

    from labscale.backends.hf import generated_length

    tokenizer, model = backend.tokenizer, backend.model
    stops = set(backend.stop_token_ids())
    total = 0
    for start in range(0, len(conversations), batch_size):
        prompts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations[start : start + batch_size]
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=sorted(stops),
            )
        new = out[:, encoded["input_ids"].shape[1] :]
        total += sum(generated_length(row.tolist(), stops) for row in new)
    return total


def lm_eval_model(backend, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    if backend.quantize != "none":  # HFLM re-ties the embedding to lm_head, which int8 has replaced: keep it as is
        backend.model.tie_weights = lambda *args, **kwargs: None
    return HFLM(pretrained=backend.model, tokenizer=backend.tokenizer, batch_size=batch_size, device="cpu")


def run_lm_eval(backend, conversations, max_new_tokens: int, batch_size: int) -> int:
    """lm-eval's ``generate_until`` on the chat-templated prompts (its own length sorting and stop handling)."""
    from lm_eval.api.instance import Instance

    tokenizer = backend.tokenizer
    stop = tokenizer.decode(backend.stop_token_ids()[:1])
    gen_kwargs = {"until": [stop], "max_gen_toks": max_new_tokens, "do_sample": False}
    requests = [
        Instance("generate_until", {}, (backend.prompt_text(c), dict(gen_kwargs)), idx)
        for idx, c in enumerate(conversations)
    ]
    texts = lm_eval_model(backend, batch_size).generate_until(requests, disable_tqdm=True)
    # lm-eval returns the text cut before the stop string: its tokens, plus the stop token where it stopped early
    return sum(min(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1, max_new_tokens) for t in texts)


def timed(label: dict, fn, *args, agreement: tuple[list, list] | None = None, **kwargs) -> dict:
    """Run ``fn`` and time it; ``agreement``: two lists of texts (the second filled by this call) whose equal pairs
    the row reports as ``same_replies_as_without_reuse``."""
    before = load_average()
    start = time.perf_counter()
    tokens = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    row = {
        **label,
        "seconds": round(seconds, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "loadavg_before": before,
        "loadavg_after": load_average(),
    }
    if agreement is not None:
        base, reused = agreement
        row["same_replies_as_without_reuse"] = f"{sum(a == b for a, b in zip(base, reused, strict=True))}/{len(base)}"
    print(json.dumps(row), flush=True)
    return row


def median_rows(rows: list[dict]) -> dict[str, dict]:
    """Per engine, its row with the median seconds and tokens per second over the repeats (``--repeats``)."""
    out = {}
    for engine in dict.fromkeys(r["engine"] for r in rows):
        mine = [r for r in rows if r["engine"] == engine]
        out[engine] = {
            **mine[0],
            "seconds": round(statistics.median(r["seconds"] for r in mine), 2),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in mine), 1),
            "repeats": len(mine),
        }
    return out


def ratio_table(rows: list[dict]) -> str:
    """Markdown: each (precision, batch)'s tokens/s per engine and labscale's speed-up over the others (medians
    over the repeats)."""
    lines = [
        "| prompts | precision | batch | labscale tok/s | labscale with prefix reuse tok/s | transformers tok/s "
        "| lm-eval hf tok/s | labscale / lm-eval | labscale / transformers | labscale with prefix reuse / lm-eval "
        "(tokens/s) | replies equal with and without reuse |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain = [r for r in rows if r.get("prefix") is None]
    for key in sorted({(r["workload"], r["precision"], r["batch_size"]) for r in plain}):
        workload, precision, batch = key
        cell = median_rows([r for r in plain if (r["workload"], r["precision"], r["batch_size"]) == key])
        if "labscale" not in cell:
            continue
        ours = cell["labscale"]["seconds"]
        speeds = [str(cell[e]["tokens_per_s"]) if e in cell else "-" for e in ENGINES]
        ratios = [f"{cell[e]['seconds'] / ours:.2f}x" if e in cell else "-" for e in ("lm-eval", "transformers")]
        reuse = cell.get("labscale-reuse")
        if reuse and "lm-eval" in cell:  # a reused prefix may round some replies apart: the rates, not the times
            ratios.append(f"{reuse['tokens_per_s'] / cell['lm-eval']['tokens_per_s']:.2f}x")
        else:
            ratios.append("-")
        ratios.append(reuse.get("same_replies_as_without_reuse", "-") if reuse else "-")
        lines.append(f"| {workload} | {precision} | {batch} | " + " | ".join(speeds + ratios) + " |")
    prefix_rows = [r for r in rows if r.get("prefix") is not None]
    if prefix_rows:
        lines += [
            "",
            "| prompts | precision | batch | prefix off s | prefix auto s | speed-up | lm-eval hf s | replies equal |",
        ]
        lines.append("|---|---|---|---|---|---|---|---|")
        for workload, precision, batch in sorted(
            {(r["workload"], r["precision"], r["batch_size"]) for r in prefix_rows}
        ):
            cell = {
                r["prefix"]: r
                for r in prefix_rows
                if (r["workload"], r["precision"], r["batch_size"]) == (workload, precision, batch)
            }
            lm = [
                r
                for r in rows
                if r.get("prefix") is None
                and r["engine"] == "lm-eval"
                and (r["workload"], r["precision"], r["batch_size"]) == (workload, precision, batch)
            ]
            lines.append(
                f"| {workload} | {precision} | {batch} | {cell['off']['seconds']} | {cell['auto']['seconds']} | "
                f"{cell['off']['seconds'] / cell['auto']['seconds']:.2f}x | {lm[0]['seconds'] if lm else '-'} | "
                f"{cell['auto'].get('same_replies_as_without_reuse', '-')} |"
            )
    return "\n".join(lines)


def zero_shot_round(rows, runners, engines, prompts, batch_size: int, args, precision: str, repeat: int) -> None:
    """One timed zero-shot call per engine, one after the other, appended to ``rows``."""
    texts: dict[str, list] = {"labscale": [], "labscale-reuse": []}
    for engine in args.engines:
        label = {
            "workload": "summarization 0-shot",
            "precision": precision,
            "engine": engine,
            "batch_size": batch_size,
            "prompts": len(prompts),
            "max_new_tokens": args.new_tokens,
            "repeat": repeat,
        }
        extra = {"texts": texts[engine]} if engine in texts else {}
        with_texts = engine == "labscale-reuse" and "labscale" in args.engines
        rows.append(
            timed(
                label,
                runners[engine],
                engines[engine],
                prompts,
                args.new_tokens,
                batch_size,
                **extra,
                agreement=(texts["labscale"], texts[engine]) if with_texts else None,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompts", type=int, nargs="+", default=[8, 32], help="prompts at each batch size")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--few-shot-prompts", type=int, default=32, help="0: skip the prefix-reuse rows")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="zero-shot rounds, the engines alternating in each; the table: medians"
    )
    args = parser.parse_args()
    if len(args.prompts) != len(args.batch_sizes):
        parser.error(f"--prompts needs one count per batch size {args.batch_sizes}, got {args.prompts}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    from labscale.backends import load_backend

    machine = machine_info(args.threads)
    print(json.dumps({"machine": machine, "loadavg": load_average()}), flush=True)
    zero_shot, _ = task_prompts("summarization", 0, max(args.prompts))
    few_shot, few_budget = task_prompts("fact_checking", 3, args.few_shot_prompts)
    runners = {
        "labscale": run_labscale,
        "labscale-reuse": run_labscale_reuse,
        "transformers": run_transformers,
        "lm-eval": run_lm_eval,
    }
    rows = []
    for precision in args.precisions:
        backend = load_backend(PRECISIONS[precision])  # no cache: every call generates
        backend.load()
        # "default": each engine as it comes (the folder's fp32 weights for transformers and lm-eval)
        others = load_backend(PRECISIONS["fp32"]) if precision == "default" else backend
        engines = {engine: backend if engine.startswith("labscale") else others for engine in args.engines}
        for engine in args.engines:  # warm-up: the first call of each engine pays one-off costs
            runners[engine](engines[engine], zero_shot[:2], 4, 2)
        for batch_size, n in zip(args.batch_sizes, args.prompts, strict=True):
            for repeat in range(args.repeats):
                zero_shot_round(rows, runners, engines, zero_shot[:n], batch_size, args, precision, repeat)
            if not args.few_shot_prompts:
                continue
            few_texts: dict[str, list] = {"off": [], "auto": []}
            for prefix in ("off", "auto"):
                label = {
                    "workload": "fact-checking 3-shot",
                    "precision": precision,
                    "engine": "labscale",
                    "prefix": prefix,
                    "batch_size": batch_size,
                    "prompts": len(few_shot),
                }
                rows.append(
                    timed(
                        label,
                        run_labscale,
                        backend,
                        few_shot,
                        few_budget,
                        batch_size,
                        prefix,
                        texts=few_texts[prefix],
                        agreement=(few_texts["off"], few_texts["auto"]) if prefix == "auto" else None,
                    )
                )
            if "lm-eval" in args.engines:
                label = {
                    "workload": "fact-checking 3-shot",
                    "precision": precision,
                    "engine": "lm-eval",
                    "batch_size": batch_size,
                    "prompts": len(few_shot),
                }
                rows.append(timed(label, run_lm_eval, others, few_shot, few_budget, batch_size))
        del backend, others, engines
    print()
    print(ratio_table(rows))


if __name__ == "__main__":
    main()
