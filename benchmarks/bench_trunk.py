"""The frozen trunk (labscale.finetune.trunk) on the chapters' defaults: trl fine-tuning (the structured chapter's
ViGGO adapter), DP fine-tuning and the leakage audit (the privacy chapter's) with the layers below the adapted ones
run once, against the whole model at every step or for every model.

Run: ``python benchmarks/bench_trunk.py`` (``--threads 1`` as each chapter of a two-at-a-time book build has;
``--configs sft-frozen sft-full`` for some of them).

Configurations, each in its own subprocess, in this order:

* ``sft-frozen`` / ``sft-full``: :func:`labscale.finetune.finetune` of the structured chapter's ViGGO adapter (96
  training examples from the release files, top 8 layers, 2 epochs, batch 4, bf16 autocast where the CPU has it),
  ``frozen_trunk`` on and off;

* ``dp-frozen`` / ``dp-full``: one :func:`labscale.privacy.dp_finetune` at epsilon 1 with the chapter's settings
  (top 4 layers, whole-sequence loss, 2 epochs, batch 8, the three canaries), ``frozen_trunk`` on and off;
* ``audit-shared`` / ``audit-full``: :func:`labscale.privacy.leakage_audit` of the base model and the
  ``dp-frozen`` adapter (49 candidates per canary), ``shared_trunk`` on and off.

Prints one JSON line per configuration (seconds, and the losses or the audit's values) and a last line with the
ratios and the largest difference between the paired results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONFIGS = ("sft-frozen", "sft-full", "dp-frozen", "dp-full", "audit-shared", "audit-full")


def run_one(name: str, out: Path, threads: int) -> dict:
    import torch

    from labscale.finetune import FinetuneConfig
    from labscale.privacy import dp_finetune, leakage_audit, make_canaries

    torch.set_num_threads(threads)
    started = time.perf_counter()
    row: dict = {"benchmark": "trunk", "config": name}
    if name.startswith("sft-"):  # the structured chapter's ViGGO adapter
        from labscale import structured
        from labscale.finetune import finetune
        from labscale.runner import plan_experiment

        plan = plan_experiment(["smollm2-135m"], ["viggo"], [0], limit=20, source="local")
        config = structured.finetune_configs(plan, ["viggo"], "cpu", examples=96, top_layers=8, epochs=2)["viggo"]
        result = finetune(
            "smollm2-135m", "viggo", source="local", config=config, output_dir=out / name, resume=False,
            frozen_trunk=name == "sft-frozen",
        )  # fmt: skip
        row["losses"] = [h["loss"] for h in result.model_card["train_loss"]["history"]]
        row["frozen_trunk_layers"] = result.model_card["resolved"]["frozen_trunk_layers"]
    elif name.startswith("dp-"):  # the privacy chapter's finetune_options
        config = FinetuneConfig.preset(
            "cpu",
            train_fraction=0.08,
            per_device_batch_size=8,
            epochs=2,
            top_layers=4,
            max_length=256,
            learning_rate=2e-3,
            warmup_steps=2,
            completion_only_loss=False,
        )
        result = dp_finetune(
            "smollm2-135m", "medqa_tf", epsilon=1, config=config, output_dir=out / name,
            canaries=make_canaries([1, 4, 8], digits=6, seed=0), resume=False, frozen_trunk=name == "dp-frozen",
        )  # fmt: skip
        row["losses"] = [h["loss"] for h in result.model_card["train_loss"]["history"]]
    else:
        table = leakage_audit(
            "smollm2-135m", {"eps=1": out / "dp-frozen" / "adapter"}, output_dir=out / name, n_candidates=49,
            progress=False, shared_trunk=name == "audit-shared",
        )  # fmt: skip
        row["values"] = table["value"].tolist()
    row.update(
        seconds=round(time.perf_counter() - started, 1),
        torch_threads=threads,
        load_average=os.getloadavg()[0],
        machine=platform.platform(),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, Path(args.out), args.threads)), flush=True)
        return
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-trunk-") as out:
        for name in [c for c in CONFIGS if c in args.configs]:  # audits read the dp-frozen adapter
            if name.startswith("audit-") and "dp-frozen" not in rows:
                print(json.dumps({"benchmark": "trunk", "config": name, "error": "needs dp-frozen in --configs"}))
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--one", name, "--out", out, "--threads", str(args.threads)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(json.dumps({"benchmark": "trunk", "config": name, "error": proc.stderr.strip()[-2000:]}))
                return
            rows[name] = json.loads(lines[-1])
            print(lines[-1], flush=True)

    def gap(a: list, b: list) -> float:
        return max(abs(x - y) for x, y in zip(a, b, strict=True) if x == x and y == y)  # NaN-free pairs

    summary: dict = {"benchmark": "trunk"}
    for kind, fast, slow, field in (
        ("sft", "sft-frozen", "sft-full", "losses"),
        ("dp", "dp-frozen", "dp-full", "losses"),
        ("audit", "audit-shared", "audit-full", "values"),
    ):
        if fast in rows and slow in rows:
            summary[f"{kind}_speedup"] = round(rows[slow]["seconds"] / rows[fast]["seconds"], 2)
            summary[f"{kind}_max_{field}_difference"] = gap(rows[fast][field], rows[slow][field])
            if field == "losses":
                summary[f"{kind}_max_relative_loss_difference"] = max(
                    abs(a - b) / abs(b) for a, b in zip(rows[fast][field], rows[slow][field], strict=True) if b
                )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
