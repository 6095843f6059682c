"""Tables for the book: our metrics with confidence intervals, and the study's published numbers beside them."""

from __future__ import annotations

from importlib import resources
from typing import Iterable

import pandas as pd

from .tasks import ALL_TASK_NAMES, get_task

CITATION = ("Wolfe et al. (2024), Laboratory-Scale AI: Open-Weight Models are Competitive with ChatGPT Even in "
            "Low-Resource Settings, ACM FAccT '24, Table 2")


def headline_metrics(tasks: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Each task's headline metrics, in the study's column order (``tasks``: those tasks only, default all)."""
    return {t: get_task(t).headline_metrics for t in (ALL_TASK_NAMES if tasks is None else tasks)}


def study_table2() -> pd.DataFrame:
    """The study's Table 2 in tidy form: model, scenario, task, metric, value (published reference values)."""
    with resources.files("labscale.reference").joinpath("table2.csv").open() as handle:
        wide = pd.read_csv(handle)
    tidy = wide.melt(id_vars=["model", "scenario"], var_name="column", value_name="value")
    tidy[["task", "metric"]] = tidy["column"].str.split(".", n=1, expand=True)
    return tidy.drop(columns="column")[["model", "scenario", "task", "metric", "value"]]


SCENARIOS = ("0-shot", "1-shot", "2-shot", "3-shot", "fine-tuned")


def _scenario_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by model, then scenario in the study's order (0- to 3-shot, then fine-tuned)."""
    rank = {s: i for i, s in enumerate(SCENARIOS)}
    return frame.sort_index(level=["model", "scenario"], key=lambda idx: idx.map(rank) if idx.name == "scenario"
                            else idx)


def format_ci(value: float, low: float | None, high: float | None, digits: int = 2) -> str:
    if low is None or pd.isna(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def results_table(table: pd.DataFrame, *, headline_only: bool = True, digits: int = 2) -> pd.DataFrame:
    """Wide table: one row per (model, scenario), one column per task metric, cells "value [95% CI]"."""
    heads = headline_metrics(table["task"].unique())
    rows = table.copy()
    if headline_only:
        rows = rows[[m in heads.get(t, ()) for t, m in zip(rows["task"], rows["metric"])]]
    rows["cell"] = [format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])]
    wide = rows.pivot_table(index=["model", "scenario"], columns=["task", "metric"], values="cell", aggfunc="first")
    order = [(t, m) for t in ALL_TASK_NAMES for m in (heads.get(t, ()) if headline_only else sorted(set(rows["metric"])))
             if (t, m) in wide.columns]
    return _scenario_order(wide[order]).fillna("–")


def beside_study(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Our headline numbers (with CIs) stacked above the study's published Table 2 rows for the same tasks.

    The ``origin`` column keeps the two apart: ours come from run records; the study's are cited reference
    values (:data:`CITATION`) and are never presented as our results.
    """
    heads = headline_metrics(table["task"].unique())
    ours = table[[m in heads.get(t, ()) for t, m in zip(table["task"], table["metric"])]].copy()
    ours["cell"] = [format_ci(v, lo, hi, digits) for v, lo, hi in zip(ours["value"], ours["ci_low"], ours["ci_high"])]
    ours["origin"] = "this book (run records)"
    ref = study_table2()
    ref = ref[ref["task"].isin(set(ours["task"]))].copy()
    ref["cell"] = ref["value"].map(lambda v: f"{v:.2f}")
    ref["origin"] = "Wolfe et al. 2024, Table 2"
    both = pd.concat([ours[["origin", "model", "scenario", "task", "metric", "cell"]],
                      ref[["origin", "model", "scenario", "task", "metric", "cell"]]])
    wide = both.pivot_table(index=["origin", "model", "scenario"], columns=["task", "metric"], values="cell",
                            aggfunc="first", sort=False)
    order = [(t, m) for t in ALL_TASK_NAMES for m in heads.get(t, ()) if (t, m) in wide.columns]
    return wide[order].fillna("–")


def metric_details(table: pd.DataFrame) -> pd.DataFrame:
    """The non-numeric details each run record stores with its metrics (e.g. the BERTScore encoder and layer)."""
    import json
    from pathlib import Path

    rows = []
    for run in dict.fromkeys(table["run"]):
        for name, m in json.loads((Path(run) / "metrics.json").read_text()).items():
            extra = {k: v for k, v in m.items() if k not in ("value", "ci_low", "ci_high", "n")}
            if extra:
                rows.append({"task": Path(run).parent.name, "metric": name, **extra})
    return pd.DataFrame(rows).drop_duplicates(ignore_index=True)


def invalid_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Share of replies that did not follow the output format, per model, task and scenario (with CI)."""
    rows = table[table["metric"] == "invalid_rate"].copy()
    rows["invalid rate"] = [format_ci(v, lo, hi) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])]
    wide = rows.pivot_table(index=["model", "scenario"], columns="task", values="invalid rate", aggfunc="first")
    return _scenario_order(wide)


def curve_table(curve: pd.DataFrame, metric: str, digits: int = 2) -> pd.DataFrame:
    """A learning curve as a table: one row per point (base, then checkpoints or fractions) with the training
    size and ``metric`` with its 95 % confidence interval."""
    rows = curve[curve["metric"] == metric].sort_values(["model", "samples", "fraction"])
    table = rows[["model", "point", "samples", "train_examples", "epochs"]].copy()
    table[metric] = [format_ci(v, lo, hi, digits) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])]
    table["items"] = rows["n"].values
    return table.rename(columns={"train_examples": "distinct examples"}).reset_index(drop=True)
