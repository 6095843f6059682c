"""Fine-tuning cost on the embedded SmolLM2-135M-Instruct: step time, training tokens/s and peak memory.

Run: ``python benchmarks/bench_finetune.py`` (``--steps 10 --configs lora-fp32 qlora-nf4-cpu``).

Each configuration trains ``--steps`` optimizer steps of :func:`labscale.finetune.finetune` (trl SFTTrainer + peft)
on entity-resolution offline data, in its **own subprocess** so that the peak resident memory
(``getrusage`` max RSS, a process high-water mark) belongs to that configuration alone. Configurations:

* ``lora-fp32``: the ``"cpu"`` preset (LoRA r=8 on every linear layer, batch 4 x 1) in fp32 on the CPU;
* ``lora-bf16-autocast``: the same with bf16 autocast and fp32 master weights, what ``precision="auto"`` picks on
  a CPU that computes bf16 natively (avx512_bf16, amx_bf16): the A/B of that choice;
* ``lora-fp32-every-position``: the same with trl's own CPU behaviour, the LM head projecting every position and
  not only the labelled ones (:func:`labscale.finetune.training.answer_positions_only` switched off): the A/B of
  that switch, with equal losses;
* ``qlora-nf4-cpu``: the same with the base model in 4-bit NF4 through bitsandbytes on the CPU;
* ``qlora-bf16-cuda`` (only when CUDA is present): the ``"paper"`` preset, i.e. 4-bit NF4 with bf16 compute,
  paged 8-bit AdamW and gradient checkpointing, batch 1 x 4.

Prints one JSON line per configuration: median seconds per optimizer step (the first step, a warm-up, is
excluded), non-padding training tokens per second over the timed steps, peak memory (max RSS; on CUDA also
``torch.cuda.max_memory_allocated``), RSS after the model loaded, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CPU_CONFIGS = ("lora-fp32", "lora-bf16-autocast", "lora-fp32-every-position", "qlora-nf4-cpu")
CUDA_CONFIGS = ("qlora-bf16-cuda",)


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 1024)


def run_one(name: str, steps: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from labscale.finetune import FinetuneConfig, finetune

    fraction = steps * 4 / 700  # both presets take 4 examples per optimizer step; ER offline train: 700
    if name == "qlora-bf16-cuda":
        if not torch.cuda.is_available():
            raise SystemExit("qlora-bf16-cuda needs CUDA")
        config = FinetuneConfig.preset("paper", max_length=384, save_steps=10**6, train_fraction=fraction)
        base = "smollm2-135m"
    else:
        config = FinetuneConfig.preset(
            "cpu",
            load_in_4bit=name == "qlora-nf4-cpu",
            precision="bf16" if name == "lora-bf16-autocast" else "fp32",
            save_steps=10**6,
            train_fraction=fraction,
        )
        base = "smollm2-135m?device=cpu"

    class Timer(TrainerCallback):
        def __init__(self):
            self.rows, self.loaded_rss = [], None
            self._t = self._tokens = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.loaded_rss = _rss_mb()

        def on_step_begin(self, args, state, control, **kwargs):
            if self._t is None:  # first micro-batch of this optimizer step
                self._t, self._tokens = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):
            self.rows.append((time.perf_counter() - self._t, state.num_input_tokens_seen - self._tokens))
            self._t = None

    if name == "lora-fp32-every-position":
        import contextlib

        import labscale.finetune.training as training

        training.answer_positions_only = lambda device: contextlib.nullcontext()
    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="bench-ft-") as out:
        result = finetune(base, "entity_resolution", config=config, output_dir=out, resume=False, callbacks=[timer])
    timed = timer.rows[1:] or timer.rows
    seconds = sum(t for t, _ in timed)
    row = {
        "benchmark": "finetune",
        "config": name,
        "model": "smollm2-135m",
        "task": "entity_resolution",
        "preset": config.preset_name,
        "settings": result.model_card["resolved"],
        "optimizer_steps": result.optimizer_steps,
        "examples_per_step": config.effective_batch,
        "trainable_parameters": result.model_card["lora"]["trainable_parameters"],
        "step_seconds_median": round(statistics.median(t for t, _ in timed), 3),
        "step_seconds_first": round(timer.rows[0][0], 3),
        "tokens_per_second": round(sum(n for _, n in timed) / seconds, 1),
        "train_tokens": result.train_tokens,
        "loss_first": round(result.losses[0], 4),
        "loss_last": round(result.losses[-1], 4),
        "peak_rss_mb": round(_max_rss_mb(), 1),
        "rss_after_model_load_mb": round(timer.loaded_rss, 1),
        "wall_seconds": result.wall_seconds,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
    }
    if torch.cuda.is_available() and name.endswith("cuda"):
        row["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["gpu"] = torch.cuda.get_device_name(0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help=f"subset of {CPU_CONFIGS + CUDA_CONFIGS} (default: all that this machine can run)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps)), flush=True)
        return

    import torch

    configs = args.configs or list(CPU_CONFIGS + (CUDA_CONFIGS if torch.cuda.is_available() else ()))
    for name in configs:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            print(json.dumps({"benchmark": "finetune", "config": name, "error": proc.stderr.strip()[-2000:]}))
            continue
        print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
