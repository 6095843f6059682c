"""labscale: the thin library under the Laboratory-Scale AI research companion.

Notebooks import this package; every step of an experiment (data, prompts, generation, metrics,
run records, plots) is one call into it. The public API, importable from the package itself::

    import labscale

    plan = labscale.plan_experiment(["smollm2-135m"], ["fact_checking"], shots=[0, 3], limit=50)
    table = labscale.run_experiment(plan)            # one run record per (model, task, scenario)
    task = labscale.get_task("fact_checking")         # prompt, shots, parsing and metrics of one task
    data = task.load(labscale.Source.OFFLINE)         # its data (the loaders live in labscale.data)
    rows = labscale.metrics_table("runs/domain_adaptation")  # every run record below a folder, tidy

``import labscale`` is cheap: only :mod:`labscale.errors` and :mod:`labscale.core` (standard library only) are
imported with it; every other name and submodule is imported on first use (module ``__getattr__``), so neither
torch nor pandas loads until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core import (
    INVALID,
    SCENARIOS,
    SOURCES,
    SPLITS,
    Example,
    MalformedRows,
    Scenario,
    Source,
    Split,
    TaskData,
)
from .errors import DataUnavailable, InvalidParameter, LabscaleError

__version__ = "0.1.0"

#: public name -> the submodule that defines it (imported on first access)
_LAZY = {
    "plan_experiment": "runner",
    "run_experiment": "runner",
    "ExperimentPlan": "runner",
    "get_task": "tasks",
    "Task": "tasks",
    "TASK_NAMES": "tasks",
    "VALUE_TASK_NAMES": "tasks",
    "ALL_TASK_NAMES": "tasks",
    "load_backend": "backends",
    "parse_model_spec": "backends",
    "ModelSpec": "backends",
    "Decoding": "backends",
    "read_run": "records",
    "metrics_table": "records",
}

#: the package's submodules (``labscale.<name>``), imported on first access
SUBMODULES = (
    "api_finetune",
    "backends",
    "book",
    "cache",
    "compare",
    "config",
    "core",
    "cost",
    "data",
    "errors",
    "finetune",
    "generality",
    "hallucination",
    "hashing",
    "metrics",
    "parsing",
    "plots",
    "privacy",
    "protocol",
    "prompts",
    "records",
    "report",
    "runner",
    "scoring",
    "selective",
    "sweep",
    "tasks",
    "truthfulqa",
)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__
    from .backends import Decoding, ModelSpec, load_backend, parse_model_spec
    from .records import metrics_table, read_run
    from .runner import ExperimentPlan, plan_experiment, run_experiment
    from .tasks import ALL_TASK_NAMES, TASK_NAMES, VALUE_TASK_NAMES, Task, get_task


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    # experiments and their records
    "plan_experiment",
    "run_experiment",
    "ExperimentPlan",
    "read_run",
    "metrics_table",
    # tasks and their data
    "get_task",
    "Task",
    "TASK_NAMES",
    "VALUE_TASK_NAMES",
    "ALL_TASK_NAMES",
    "Example",
    "TaskData",
    "MalformedRows",
    "INVALID",
    "Source",
    "Split",
    "Scenario",
    "SOURCES",
    "SPLITS",
    "SCENARIOS",
    # models
    "load_backend",
    "parse_model_spec",
    "ModelSpec",
    "Decoding",
    # errors
    "LabscaleError",
    "InvalidParameter",
    "DataUnavailable",
    "__version__",
    *SUBMODULES,
]
