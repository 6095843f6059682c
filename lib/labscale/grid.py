"""Run a grid of (model, task, shots) cells as Ray tasks, or one after the other in this process.

Each cell is one run of :mod:`labscale.runner`: a Ray task plans it with :func:`~labscale.runner.plan_experiment`
and records it with :func:`~labscale.runner.run_one`, through the run protocol, into the cell's output folder and
the one SQLite response cache (each process opens its own connection). Every cell is planned in the driver first,
so bad input fails before Ray starts or a model loads. A task that loads a model takes one GPU where the cluster
has GPUs, else one CPU, and sets torch's threads so that the workers share the cores without oversubscribing them;
an API model's task (``openai:``) takes one CPU.

An interrupted grid resumes when run again: finished cells' records are current and reused, and a cell that was
cut short gets the items it had finished from the response cache.

    labscale-grid --models "openai:/models/m?base_url=http://127.0.0.1:8000/v1" --tasks fact_checking \\
        --shots 0 1 --limit 20 --output-dir runs/grid --workers 2
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import config, records
from . import progress as progress_bars
from .backends import parse_model_spec
from .cache import ResponseCache
from .errors import InvalidParameter, LabscaleError, check_range
from .runner import ExperimentPlan, plan_experiment, run_one, run_spec

_PLAN_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(plan_experiment).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
#: plan_experiment's keywords a cell may set: every process opens its own cache; adapter runs are not grid cells
PLAN_KEYWORDS = sorted(set(_PLAN_DEFAULTS) - {"cache", "adapters"})


class GridFailed(LabscaleError):
    """Some cells of a grid failed; the others are recorded, and running the grid again resumes it."""


@dataclass(frozen=True)
class Cell:
    """One run of a grid: a model string, a task, a number of shots and the plan's other keywords."""

    model: str
    task: str
    shots: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model} {self.task} {self.shots}-shot"


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with an absolute output folder (and data path): Ray workers may start elsewhere."""
    for key in options:
        if key not in PLAN_KEYWORDS:
            valid = ", ".join(PLAN_KEYWORDS)
            raise InvalidParameter(f"unknown grid keyword {key!r}; valid keywords: {valid}")
    out = dict(options)
    out["output_dir"] = str(Path(out.get("output_dir", _PLAN_DEFAULTS["output_dir"])).absolute())
    if out.get("data_path") is not None:
        out["data_path"] = str(Path(out["data_path"]).absolute())
    return out


def grid_specs(
    models: Sequence[str] | str, tasks: Sequence[str] | str, shots: Sequence[int] | int, **plan_kwargs: Any
) -> list[Cell]:
    """The cells of models x tasks x shots, each with ``plan_kwargs`` (:data:`PLAN_KEYWORDS`); checked by
    :func:`run_grid` before anything runs."""
    options = _checked_options(plan_kwargs)
    as_list = lambda v: [v] if isinstance(v, (str, int)) else list(v)  # noqa: E731
    return [Cell(m, t, k, options) for m in as_list(models) for t in as_list(tasks) for k in as_list(shots)]


def _plan_cells(cells: Sequence[Cell], cache: ResponseCache) -> list[tuple[Cell, ExperimentPlan]]:
    """Plan every cell (cells sharing their keywords in one plan): bad input raises here, naming the value.
    Two cells that would write the same record folder are refused."""
    if not cells:
        raise InvalidParameter("the grid has no cells: give at least one model, task and shots setting")
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        _checked_options(cell.options)
        groups.setdefault(json.dumps(cell.options, sort_keys=True, default=str), []).append(cell)
    planned, folders = [], {}
    for group in groups.values():
        unique = lambda values: list(dict.fromkeys(values))  # noqa: E731
        plan = plan_experiment(
            unique(c.model for c in group),
            unique(c.task for c in group),
            unique(c.shots for c in group),
            cache=cache,
            **group[0].options,
        )
        for cell in group:
            folder = plan.output_dir / run_spec(plan, *_locate(plan, cell), cell.shots).name
            if folder in folders:
                raise InvalidParameter(f"grid cells {folders[folder].name!r} and {cell.name!r} both write {folder}")
            folders[folder] = cell
            planned.append((cell, plan))
    return planned


def _locate(plan: ExperimentPlan, cell: Cell):
    label = parse_model_spec(cell.model).label
    return next(s for s in plan.models if s.label == label), plan.task_plan(cell.task)


def _close(plans: Sequence[ExperimentPlan]) -> None:
    for plan in {id(p): p for p in plans}.values():
        for backend in plan.backends.values():
            backend.close()


def run_cell(cell: Cell, cache_path: str, threads: int | None = None, reuse: bool = True) -> str:
    """Plan and record one cell in this process (a Ray task's body); returns its run folder. ``threads`` sets
    torch's threads for a model that runs here (an API model leaves torch unimported)."""
    if threads and parse_model_spec(cell.model).backend != "openai":
        import torch

        torch.set_num_threads(threads)
    cache = ResponseCache(cache_path)
    try:
        plan = plan_experiment([cell.model], [cell.task], [cell.shots], cache=cache, **cell.options)
        try:
            return str(run_one(plan, *_locate(plan, cell), cell.shots, reuse=reuse))
        finally:
            _close([plan])
    finally:
        cache.close()


def run_grid(
    cells: Sequence[Cell],
    *,
    workers: int | None = None,
    use_ray: bool = True,
    num_gpus_per_task: float | None = None,
    cache_path: str | Path | None = None,
    reuse: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Record every cell (Ray tasks, at most ``workers`` at once, default the cluster's CPUs; one process with
    ``use_ray=False``) and return the tidy metrics table of their runs. Starts a local Ray cluster of ``workers``
    CPUs unless Ray is running.

    ``num_gpus_per_task``: None takes 1 GPU for a local model's task when the cluster has GPUs (an API model's task
    takes a CPU only), else 1 CPU. Failed cells raise
    :class:`GridFailed` once the others are done; rerunning resumes from the records and the response cache."""
    if workers is not None:
        check_range("workers", workers, 1, None, integer=True)
    if num_gpus_per_task is not None:
        check_range("num_gpus_per_task", num_gpus_per_task, 0, None)
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InvalidParameter("Ray is not installed: pip install 'labscale[grid]', or use_ray=False") from None
    cache_file = str(Path(cache_path or config.cache_path()).absolute())
    cache = ResponseCache(cache_file)
    try:
        planned = _plan_cells(cells, cache)  # bad input fails here, before Ray starts or a model loads
        if not use_ray:
            try:
                with progress_bars.bar(total=len(planned), desc="grid", unit="run", disable=not progress) as bar:
                    run_dirs = []
                    for cell, plan in planned:
                        bar.set_postfix_str(cell.name)
                        run_dirs.append(str(run_one(plan, *_locate(plan, cell), cell.shots, reuse=reuse)))
                        bar.update(1)
            finally:
                _close([plan for _, plan in planned])
            return _table(planned, run_dirs)
        _close([plan for _, plan in planned])
    finally:
        cache.close()
    return _run_on_ray(planned, cache_file, workers, num_gpus_per_task, reuse, progress)


def _run_on_ray(planned, cache_file: str, workers, num_gpus_per_task, reuse: bool, progress: bool) -> pd.DataFrame:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        resources = ray.cluster_resources()
        workers = workers or int(resources.get("CPU", 1))
        threads = max(1, (os.cpu_count() or 1) // workers)
        task, gpu = ray.remote(run_cell), resources.get("GPU", 0) >= 1

        def submit(cell: Cell):
            """One task: a GPU for a model that runs on the workers, where the cluster has GPUs; else a CPU."""
            gpus = int(gpu and parse_model_spec(cell.model).backend != "openai")
            options = {"num_cpus": 1, "num_gpus": gpus if num_gpus_per_task is None else num_gpus_per_task}
            return task.options(max_retries=0, **options).remote(cell, cache_file, threads, reuse)

        queue, pending, done, failed = list(range(len(planned))), {}, {}, []
        desc = f"grid ({workers} workers)"
        with progress_bars.bar(total=len(queue), desc=desc, unit="run", disable=not progress) as bar:
            while queue or pending:
                while queue and len(pending) < workers:
                    i = queue.pop(0)
                    pending[submit(planned[i][0])] = i
                ready, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ready[0])
                try:
                    done[i] = ray.get(ready[0])
                except Exception as exc:  # the others go on; the grid fails at the end
                    failed.append((planned[i][0], exc))
                bar.set_postfix_str(planned[i][0].name)
                bar.update(1)
    finally:
        if started:
            ray.shutdown()
    if failed:
        names = "; ".join(f"{c.name}: {str(e).strip().splitlines()[-1]}" for c, e in failed)
        raise GridFailed(
            f"{len(failed)} of {len(planned)} grid cells failed ({names}); the other cells are recorded: "
            "run the grid again to resume (finished items come from the response cache)"
        ) from failed[0][1]
    return _table(planned, list(done.values()))


def _table(planned, run_dirs: Sequence[str]) -> pd.DataFrame:
    roots = dict.fromkeys(plan.output_dir for _, plan in planned)
    table = pd.concat([records.metrics_table(root) for root in roots], ignore_index=True)
    return table[table["run"].isin(set(run_dirs))].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model strings")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--shots", nargs="+", type=int, default=[0])
    parser.add_argument("--limit", type=int, default=None, help="items per run (default: the whole split)")
    parser.add_argument("--source", default="offline", help="data source of every task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/grid")
    parser.add_argument("--cache", default=None, help="response cache file (default: $LABSCALE_CACHE or the home's)")
    parser.add_argument("--workers", type=int, default=None, help="Ray tasks at once (default: the cluster's CPUs)")
    parser.add_argument("--no-ray", action="store_true", help="run the cells one after the other in this process")
    args = parser.parse_args(argv)
    try:
        cells = grid_specs(
            args.models,
            args.tasks,
            args.shots,
            limit=args.limit,
            source=args.source,
            seed=args.seed,
            output_dir=args.output_dir,
        )
        table = run_grid(cells, workers=args.workers, use_ray=not args.no_ray, cache_path=args.cache)
    except InvalidParameter as exc:
        parser.error(str(exc))
    except GridFailed as exc:
        print(f"labscale-grid: {exc}", file=sys.stderr)
        return 1
    columns = ["model", "task", "shots", "metric", "value", "ci_low", "ci_high", "n"]
    print(table[columns].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
