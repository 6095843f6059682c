"""Wall time of one grid of runs in one process vs as Ray tasks on ``--workers`` CPU workers.

Run: ``python benchmarks/bench_grid.py`` (options: ``--tasks``, ``--shots``, ``--limit``, ``--workers``,
``--model``). By default the model is the embedded SmolLM2 behind a real ``transformers serve`` on 127.0.0.1
(started here with ``tests/local_server.py``); ``--model smollm2-135m`` runs it in-process instead (each Ray task
loads its own copy, with ``cpus // workers`` torch threads).

Each mode gets a fresh response cache and output folder, so every item is generated; a one-item warm-up runs first.
Ray's start is timed apart from the grid. Every row records ``os.getloadavg()`` before and after: on a shared
machine the numbers are only comparable at a similar load.

``transformers serve`` (without ``--continuous-batching``) generates one request at a time on a single thread
(``GenerateRunner`` queues them), and the single process already keeps 4 requests in flight (the OpenAI backend's
``concurrency``): against that server, Ray workers can only overlap the client side (planning, parsing, scoring,
writing records), which bounds the speed-up near 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # local_server.py


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed_grid(model: str, args, root: Path, mode: str, **grid_options) -> dict:
    from labscale.grid import grid_specs, run_grid
    from labscale.records import find_runs, read_manifest

    cells = grid_specs([model], args.tasks, args.shots, limit=args.limit, output_dir=root / mode)
    before, start = load(), time.perf_counter()
    run_grid(cells, cache_path=root / f"{mode}.sqlite", progress=False, **grid_options)
    wall = time.perf_counter() - start
    calls = sum(read_manifest(run)["usage"]["model_calls"] for run in find_runs(root / mode))
    return {"mode": mode, "cells": len(cells), "model_calls": calls, "wall_s": round(wall, 2), "load": [before, load()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["fact_checking", "entity_resolution"])
    parser.add_argument("--shots", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds, alternating which mode goes first")
    parser.add_argument("--model", default="served", help="'served' (transformers serve) or a model string")
    args = parser.parse_args()

    import ray

    from labscale.backends import embedded
    from local_server import LocalServer

    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        root = Path(tmp)
        server = None
        model = args.model
        if model == "served":
            server = LocalServer(embedded.ensure_converted(), root / "server").start()
            model = f"openai:{server.model}?base_url={server.base_url}"
        try:
            warm = argparse.Namespace(**{**vars(args), "tasks": args.tasks[:1], "shots": [0], "limit": 1})
            timed_grid(model, warm, root, "warm-up", use_ray=False)
            rows, ray_starts = [], []
            for repeat in range(args.repeats):  # ABBA: a drift in the machine's load hits both modes alike
                for mode in ("1 process", "ray") if repeat % 2 == 0 else ("ray", "1 process"):
                    name = f"{mode} #{repeat + 1}"
                    if mode == "1 process":
                        rows.append(timed_grid(model, args, root, name, use_ray=False))
                        continue
                    start = time.perf_counter()
                    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
                    ray_starts.append(time.perf_counter() - start)
                    try:
                        rows.append(timed_grid(model, args, root, f"{name} x{args.workers}", workers=args.workers))
                    finally:
                        ray.shutdown()
        finally:
            if server is not None:
                server.stop()
    print(json.dumps({"model": args.model, "cpus": os.cpu_count(), "tasks": args.tasks, "shots": args.shots}))
    print("| mode | cells | model calls | wall (s) | load avg before -> after |")
    print("|---|---|---|---|---|")
    for row in rows:
        (before, *_), (after, *_) = row["load"]
        print(f"| {row['mode']} | {row['cells']} | {row['model_calls']} | {row['wall_s']} | {before} -> {after} |")
    one = sum(r["wall_s"] for r in rows if r["mode"].startswith("1 process"))
    on_ray = sum(r["wall_s"] for r in rows if r["mode"].startswith("ray"))
    print(f"total: 1 process {one:.1f} s, Ray {on_ray:.1f} s: speed-up {one / on_ray:.2f}x")
    print(f"Ray start (not in the grid's wall time): {', '.join(f'{s:.1f} s' for s in ray_starts)}")


if __name__ == "__main__":
    main()
