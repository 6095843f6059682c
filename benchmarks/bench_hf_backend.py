"""Throughput of the HF backend on the embedded SmolLM2-135M-Instruct: tokens/s at batch 1 and batch 8.

Run: ``make benchmark`` (or ``python benchmarks/bench_hf_backend.py --new-tokens 64 --repeats 3``).
Generation bypasses the response cache (cache=None) so every call really runs the model; decoding is greedy
with ``min_new_tokens`` equal to the budget so every sequence produces the same number of tokens.
Prints one JSON line per batch size: generated tokens per second (aggregate over the batch), with the median
over repeats, and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "Summarize: the patient reports a mild headache for two days, no fever, takes ibuprofen as needed.",
    "Claim: Arctic sea ice is shrinking. Evidence: Satellite records show a decline since 1979. Label?",
    "Name 1: SMITH JOHN Name 2: SMITH JON Address 1: 12 OAK ST Address 2: 12 OAK STREET. Same person?",
    "Explain in one sentence why the sky is blue.",
    "List three vegetables.",
    "What is the boiling point of water at sea level?",
    "Translate 'good morning' into French.",
    "Write a haiku about rain.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    import torch

    from labscale.backends import Decoding, load_backend

    backend = load_backend("smollm2-135m")  # no cache: every call generates
    backend.load()
    decoding = Decoding(max_new_tokens=args.new_tokens)
    config = backend.generation_config(decoding)
    config.min_new_tokens = args.new_tokens
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    for batch_size in args.batch_sizes:
        batch = conversations[:batch_size]
        prompts = [backend.prompt_text(c) for c in batch]
        encoded = backend.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            backend.model.generate(**encoded, generation_config=config)  # warm-up
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            with torch.inference_mode():
                out = backend.model.generate(**encoded, generation_config=config)
            elapsed = time.perf_counter() - start
            generated = (out.sequences.shape[1] - encoded["input_ids"].shape[1]) * len(batch)
            rates.append(generated / elapsed)
        print(
            json.dumps(
                {
                    "backend": "hf",
                    "model": backend.model_id,
                    "batch_size": batch_size,
                    "new_tokens_per_sequence": args.new_tokens,
                    "tokens_per_s_median": round(statistics.median(rates), 1),
                    "tokens_per_s_all": [round(r, 1) for r in rates],
                    "threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(),
                    "machine": platform.machine(),
                    "torch": torch.__version__,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
