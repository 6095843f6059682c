"""Prompt sensitivity: how much the study's numbers move when only the prompt's surface changes.

A small format grammar (:data:`FACTORS`) varies the study's prompts without touching the data or the task:

* ``separator``: the string joining the instruction, shot and query blocks of a user turn: ``"blank line"``
  (``"\\n\\n"``, the study's), ``"newline"`` (``"\\n"``) or ``"rule"`` (``"\\n---\\n"``);
* ``casing``: the system message and the instruction ``"as-is"`` (the study's), ``"lower"`` or ``"upper"``; the
  data (records, claims, shots' text, the query) are never re-cased;
* ``label_words``: the words the shots demonstrate, the ``"study"``'s or an ``"alternative"`` that the task's
  strict parser already accepts (:data:`LABEL_WORDS`: entity resolution's ``y``/``n`` as ``yes``/``no``,
  fact-checking's labels as ``supports``/``refutes``/``not enough information``);
* ``chat_template``: ``"on"`` (the study's) or ``"off"``: Hugging Face models get ``chat_template=none``, the plain
  ``User:``/``Assistant:`` fallback of :func:`labscale.prompts.render_plain`;
* ``shot_order``: the fixed shots in the ``"study"``'s order or ``"reversed"``.

:func:`format_grid` builds the formats (the study's plus every one-factor change, or the full product) and
:func:`run_format_sweep` runs one experiment plan per format (``<output_dir>/<format.name>``), every plan validated
before any model runs and every generation through the response cache. At zero shots ``label_words`` and
``shot_order`` leave the prompt unchanged, so those formats repeat the study's replies (from the cache).

The statistics read the run records back and pair them over items (:func:`labscale.compare.rescoring` rescoring
each run's replies per item, checked against the recorded metric):

* :func:`format_spread`: best minus worst format and the standard deviation across formats, each with a paired
  item bootstrap (items resampled once for all formats);
* :func:`rank_flips`: model pairs whose order under a format differs from their order under the study's format;
* :func:`ordering_holds`: the share of (format, bootstrap draw) pairs in which one condition still beats another;
* :func:`sweep_cost`: the tokens and wall time the sweep spent, from the records' manifests.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import numpy as np
import pandas as pd

from . import records
from .backends import ModelSpec, parse_model_spec, slugify
from .cache import ResponseCache
from .compare import Rescoring, _Baseline, rescoring
from .errors import InvalidParameter, check_choice, check_range
from .metrics import _bootstrap, _mean
from .prompts import Shot
from .runner import plan_experiment, run_experiment
from .tasks import ALL_TASK_NAMES, get_task

#: the format grammar: factor -> its values, the study's value first
FACTORS: dict[str, tuple[str, ...]] = {
    "separator": ("blank line", "newline", "rule"),
    "casing": ("as-is", "lower", "upper"),
    "label_words": ("study", "alternative"),
    "chat_template": ("on", "off"),
    "shot_order": ("study", "reversed"),
}
#: each separator value's text
SEPARATORS = {"blank line": "\n\n", "newline": "\n", "rule": "\n---\n"}
#: task -> {study label word: alternative}, declared only where the task's strict parser accepts the alternative
LABEL_WORDS: dict[str, dict[str, str]] = {
    "entity_resolution": {"y": "yes", "n": "no"},
    "fact_checking": {"SUPPORTS": "supports", "REFUTES": "refutes", "NOT_ENOUGH_INFO": "not enough information"},
}
DESIGNS = ("one-at-a-time", "full")
#: the most formats one grid or sweep may hold (the full product of :data:`FACTORS` is 72)
MAX_FORMATS = 72
#: the name of the study's format (and of its folder in a sweep)
STUDY = "study"


@dataclass(frozen=True)
class PromptFormat:
    """One prompt format: a value for each factor of :data:`FACTORS` (the defaults are the study's)."""

    separator: str = "blank line"
    casing: str = "as-is"
    label_words: str = "study"
    chat_template: str = "on"
    shot_order: str = "study"

    def __post_init__(self) -> None:
        for factor, value in self.as_dict().items():
            check_choice(f"value of prompt-format factor {factor!r}:", value, FACTORS[factor])

    @classmethod
    def of(cls, value: PromptFormat | Mapping[str, str]) -> PromptFormat:
        """A format from itself or from a mapping of factors to values (missing factors: the study's)."""
        if isinstance(value, PromptFormat):
            return value
        if not isinstance(value, Mapping):
            raise InvalidParameter(
                f"a prompt format must be a PromptFormat or a mapping of factors {list(FACTORS)} to values, "
                f"got {value!r}"
            )
        for factor in value:
            check_choice("prompt-format factor", factor, FACTORS)
        return cls(**value)

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def changes(self) -> dict[str, str]:
        """The factors set away from the study's value."""
        return {factor: value for factor, value in self.as_dict().items() if value != FACTORS[factor][0]}

    @property
    def is_study(self) -> bool:
        return not self.changes

    @property
    def name(self) -> str:
        """A short folder-safe slug: ``"study"``, or the changed factors, e.g. ``separator-newline__casing-lower``."""
        return "__".join(f"{factor}-{slugify(value)}" for factor, value in self.changes.items()) or STUDY

    @property
    def changes_messages(self) -> bool:
        """Whether the chat messages differ from the study's (every factor but ``chat_template`` changes them)."""
        return any(factor != "chat_template" for factor in self.changes)

    @property
    def separator_text(self) -> str:
        return SEPARATORS[self.separator]

    def case(self, text: str | None) -> str | None:
        """``text`` (a system message or instruction) in this format's casing."""
        if text is None or self.casing == "as-is":
            return text
        return text.lower() if self.casing == "lower" else text.upper()

    def arrange(self, task: str, shots: Sequence[Shot]) -> list[Shot]:
        """The shots in this format's order, answered with its label words."""
        arranged = list(reversed(shots)) if self.shot_order == "reversed" else list(shots)
        if self.label_words == "study":
            return arranged
        words = alternative_label_words(task)
        unknown = [s.assistant for s in arranged if s.assistant.strip() not in words]
        if unknown:
            raise InvalidParameter(f"shot answer(s) {unknown} of task {task!r} have no alternative; valid: {words}")
        return [Shot(s.user, words[s.assistant.strip()]) for s in arranged]

    def model_spec(self, spec: ModelSpec) -> ModelSpec:
        """The model string under this format: with the chat template off, ``chat_template=none`` (HF only)."""
        if self.chat_template == "on":
            return spec
        if spec.backend != "hf":
            raise InvalidParameter(
                f"chat_template 'off' (the Hugging Face option chat_template=none) cannot apply to model "
                f"{spec.label!r}; valid: Hugging Face models (hf:...) with chat_template 'off', any model with 'on'"
            )
        body, _, query = spec.text.partition("?")
        kept = [part for part in query.split("&") if part and unquote_plus(part.partition("=")[0]) != "chat_template"]
        return parse_model_spec(f"{body}?{'&'.join([*kept, 'chat_template=none'])}")


def alternative_label_words(task: str) -> dict[str, str]:
    """Task ``task``'s alternative label words; an error naming the tasks that have them otherwise."""
    if task not in LABEL_WORDS:
        raise InvalidParameter(
            f"label_words 'alternative' is not declared for task {task!r}; valid tasks: {', '.join(LABEL_WORDS)}"
        )
    return LABEL_WORDS[task]


def _takes_format(task_name: str) -> bool:
    """Whether the task builds its messages through :meth:`Task.messages` with a ``prompt_format``."""
    return "prompt_format" in inspect.signature(get_task(task_name).messages).parameters


def check_prompt_format(
    prompt_format: PromptFormat | Mapping[str, str], tasks: Sequence[str], models: Sequence[ModelSpec]
) -> PromptFormat | None:
    """``prompt_format`` checked against the tasks and models of a plan; None when it is the study's format."""
    fmt = PromptFormat.of(prompt_format)
    if fmt.label_words == "alternative":
        for task in tasks:
            alternative_label_words(task)
    if fmt.changes_messages:
        own = [t for t in tasks if not _takes_format(t)]
        if own:
            valid = [t for t in ALL_TASK_NAMES if _takes_format(t)]
            raise InvalidParameter(
                f"task(s) {own} lay out their own prompts: format {fmt.name!r} cannot apply (only chat_template "
                f"can); valid tasks: {', '.join(valid)}"
            )
    for spec in models:
        fmt.model_spec(spec)
    return None if fmt.is_study else fmt


# -- grids ----------------------------------------------------------------------------------------------------
def _factor_values(factors: Sequence[str] | Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Factor -> the values to use, the study's value first (added when not given)."""
    if factors is None:
        factors = FACTORS
    if isinstance(factors, str) or not isinstance(factors, (Sequence, Mapping)):
        raise InvalidParameter(f"factors must be a list of factor names or a mapping to values, got {factors!r}")
    chosen = factors if isinstance(factors, Mapping) else {f: FACTORS.get(f, ()) for f in factors}
    out = {}
    for factor, values in chosen.items():
        check_choice("prompt-format factor", factor, FACTORS)
        values = [values] if isinstance(values, str) else list(values)
        for value in values:
            check_choice(f"value of prompt-format factor {factor!r}:", value, FACTORS[factor])
        study = FACTORS[factor][0]
        out[factor] = [study, *dict.fromkeys(v for v in values if v != study)]
    return out


def format_table(formats: Sequence[PromptFormat]) -> pd.DataFrame:
    """The formats of a sweep as a table: one row per format (its folder name), what it changes from the study's
    format, and the value of every factor."""
    rows = [
        {"format": f.name, "changes": ", ".join(f"{k}: {v}" for k, v in f.changes.items()) or "none (study)"}
        | f.as_dict()
        for f in formats
    ]
    return pd.DataFrame(rows).set_index("format")


def format_grid(
    design: str = "one-at-a-time", factors: Sequence[str] | Mapping[str, Sequence[str]] | None = None
) -> list[PromptFormat]:
    """The formats of a sweep, the study's first. ``"one-at-a-time"``: the study's format plus every single-factor
    change; ``"full"``: the product of the factors' values. ``factors``: factor names (all their values) or a
    mapping of factors to values (default: all of :data:`FACTORS`); factors left out keep the study's value."""
    check_choice("design", design, DESIGNS)
    values = _factor_values(factors)
    if design == "full":
        grid = [PromptFormat(**dict(zip(values, combo, strict=True))) for combo in itertools.product(*values.values())]
    else:
        grid = [PromptFormat()] + [PromptFormat(**{f: v}) for f, vs in values.items() for v in vs[1:]]
    if len(grid) > MAX_FORMATS:
        raise InvalidParameter(f"the grid has {len(grid)} formats; at most {MAX_FORMATS}: choose fewer factors")
    return grid


def _formats(formats: Sequence[PromptFormat | Mapping[str, str]] | None) -> list[PromptFormat]:
    chosen = format_grid() if formats is None else [PromptFormat.of(f) for f in formats]
    names = [f.name for f in chosen]
    twice = sorted({n for n in names if names.count(n) > 1})
    if not chosen or twice or len(chosen) > MAX_FORMATS:
        raise InvalidParameter(
            f"formats must be 1 to {MAX_FORMATS} distinct formats, got {len(chosen)} (repeated: {twice})"
        )
    return chosen


# -- the sweep ------------------------------------------------------------------------------------------------
def run_format_sweep(
    models: Sequence[str] | str,
    tasks: Sequence[str] | str,
    shots: Sequence[int] | int,
    formats: Sequence[PromptFormat | Mapping[str, str]] | None = None,
    *,
    limit: int | None,
    source: str | Mapping[str, str],
    data_path: str | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    output_dir: str | Path = "runs/prompt_sensitivity",
    adapters: Mapping[str, str] | None = None,
    progress: bool = True,
    max_new_tokens: Mapping[str, int] | None = None,
    cache: ResponseCache | None = None,
    reuse: bool = True,
) -> pd.DataFrame:
    """Run the experiment grid once per format (default :func:`format_grid`) into ``<output_dir>/<format.name>``.

    Every format is planned (parameters, data, model strings, adapters) before any model runs; all generations go
    through one response cache. Returns the tidy metrics table (:func:`labscale.records.metrics_table`) of the
    sweep's runs with a ``format`` column."""
    chosen = _formats(formats)
    cache = cache if cache is not None else ResponseCache()
    out = Path(output_dir)
    common = dict(limit=limit, source=source, data_path=data_path, seed=seed, n_resamples=n_resamples)
    plans = {
        fmt.name: plan_experiment(
            models,
            tasks,
            shots,
            **common,
            output_dir=out / fmt.name,
            name="prompt_sensitivity",
            max_new_tokens=max_new_tokens,
            adapters=adapters,
            cache=cache,
            prompt_format=fmt,
        )
        for fmt in chosen
    }
    tables = [run_experiment(plan, reuse=reuse, progress=progress).assign(format=name) for name, plan in plans.items()]
    table = pd.concat(tables, ignore_index=True)
    return table[["format", *[c for c in table.columns if c != "format"]]]


# -- reading the sweep back -----------------------------------------------------------------------------------
_COLUMNS = ("format", "model", "task", "scenario", "metric", "value", "run")


def _rows(table: pd.DataFrame, metric: str | None) -> pd.DataFrame:
    """The table's rows of ``metric`` (default: each task's first headline metric), one per run."""
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise InvalidParameter(f"the table lacks column(s) {missing}; pass the table of run_format_sweep")
    if table.empty:
        raise InvalidParameter("the table is empty; run a sweep first")
    parts = []
    for task, group in table.groupby("task", sort=False):
        name = metric or get_task(task).headline_metrics[0]
        check_choice(f"metric of task {task!r}", name, group["metric"].unique())
        parts.append(group[group["metric"] == name])
    return pd.concat(parts).drop_duplicates("run")


class _ItemValues:
    """Per-item values of each run's metric, rescored from its record (paired: one item order per task)."""

    def __init__(self) -> None:
        self._baselines: dict[tuple[str, str], _Baseline] = {}

    def __call__(self, run: str, metric: str) -> tuple[np.ndarray, tuple, Rescoring]:
        record = records.read_run(run)
        key = (record["params"]["task"], record["params"]["source"])
        if key not in self._baselines:
            self._baselines[key] = _Baseline(run)
        base = self._baselines[key]
        base.check(record)
        how = rescoring(key[0], metric, base.options)
        shared = how.shared(base.examples)
        return base.values(record, metric, how, shared), shared, how


def _by_format(group: pd.DataFrame, values: _ItemValues) -> tuple[list[str], list[np.ndarray], tuple, Rescoring]:
    formats, arrays = [], []
    for fmt, run, metric in zip(group["format"], group["run"], group["metric"], strict=True):
        item_values, shared, how = values(run, metric)
        formats.append(fmt)
        arrays.append(item_values)
    return formats, arrays, shared, how


#: the columns of :func:`format_spread`
SPREAD_COLUMNS = [
    *("model", "task", "scenario", "metric", "best_format", "best", "worst_format", "worst"),
    *("spread", "spread_ci_low", "spread_ci_high", "spread_interval", "sd", "sd_ci_low", "sd_ci_high", "sd_interval"),
    *("formats", "items"),
]


def format_spread(
    table: pd.DataFrame, metric: str | None = None, *, n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per (model, task, scenario): the best and worst format, the spread (best minus worst) and the standard
    deviation across formats (ddof=1), each with a 95% interval from a paired item bootstrap: the items are
    resampled once for all formats, each format's metric is recomputed from its per-item values and the spread (or
    SD) taken; BCa where defined, else percentile (``*_interval`` names the method). The spread of a resample is a
    maximum over formats, so its interval leans high. ``metric``: default each task's first headline metric."""
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    values, rows = _ItemValues(), []
    for (model, task, scenario), group in _rows(table, metric).groupby(["model", "task", "scenario"], sort=False):
        if len(group) < 2:
            continue
        formats, arrays, shared, how = _by_format(group, values)
        k = len(arrays)

        def per_format(*data: np.ndarray, how: Rescoring = how, k: int = k) -> np.ndarray:
            return np.array([how.statistic(v, *data[k:]) for v in data[:k]], dtype=float)

        point = per_format(*arrays, *shared)
        spread = _bootstrap(lambda *d: np.ptp(per_format(*d)), *arrays, *shared, n_resamples=n_resamples, seed=seed)
        sd = _bootstrap(lambda *d: np.std(per_format(*d), ddof=1), *arrays, *shared, n_resamples=n_resamples, seed=seed)
        rows.append(
            {
                "model": model,
                "task": task,
                "scenario": scenario,
                "metric": group["metric"].iloc[0],
                "best_format": formats[int(np.argmax(point))],
                "best": float(point.max()),
                "worst_format": formats[int(np.argmin(point))],
                "worst": float(point.min()),
                **dict(zip(("spread", "spread_ci_low", "spread_ci_high", "spread_interval"), spread, strict=True)),
                **dict(zip(("sd", "sd_ci_low", "sd_ci_high", "sd_interval"), sd, strict=True)),
                "formats": k,
                "items": len(arrays[0]),
            }
        )
    return pd.DataFrame(rows, columns=SPREAD_COLUMNS)


#: the columns of :func:`rank_flips`
RANK_FLIP_COLUMNS = ["task", "scenario", "metric", "models", "study_order", "formats", "formats_with_flips", "flipped"]


def rank_flips(table: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Per (task, scenario) with at least two models: the models' order under the study's format, and in how many
    other formats a pair of models swaps order (``flipped``: (format, model ranked higher under the study's format,
    model it falls below) for each swap; ties are not swaps). ``metric``: default each task's first headline one."""
    rows_of_metric = _rows(table, metric)
    check_choice("format in the table (rank flips compare with it)", STUDY, rows_of_metric["format"].unique())
    rows = []
    for (task, scenario), group in rows_of_metric.groupby(["task", "scenario"], sort=False):
        scores = group.pivot_table(index="format", columns="model", values="value", aggfunc="first", sort=False)
        if scores.shape[1] < 2 or STUDY not in scores.index:
            continue
        study = scores.loc[STUDY].sort_values(ascending=False, kind="stable")
        pairs = list(itertools.combinations(study.index, 2))  # (higher, lower) under the study's format
        flipped = [
            (fmt, a, b)
            for fmt, row in scores.drop(index=STUDY).iterrows()
            for a, b in pairs
            if np.sign(study[a] - study[b]) * np.sign(row[a] - row[b]) < 0
        ]
        rows.append(
            {
                "task": task,
                "scenario": scenario,
                "metric": group["metric"].iloc[0],
                "models": scores.shape[1],
                "study_order": list(study.index),
                "formats": len(scores) - 1,
                "formats_with_flips": len({fmt for fmt, _, _ in flipped}),
                "flipped": flipped,
            }
        )
    return pd.DataFrame(rows, columns=RANK_FLIP_COLUMNS)


def _holds_per_draw(better: np.ndarray, worse: np.ndarray, shared: tuple, how: Rescoring, draws: np.ndarray):
    """For each row of item indices in ``draws``: whether ``better``'s statistic exceeds ``worse``'s."""
    if how.statistic is _mean and better.ndim == 1:
        return better[draws].mean(axis=1) > worse[draws].mean(axis=1)
    return np.array(
        [
            how.statistic(better[d], *(s[d] for s in shared)) > how.statistic(worse[d], *(s[d] for s in shared))
            for d in draws
        ]
    )


def ordering_holds(
    table: pd.DataFrame,
    better: str,
    worse: str,
    metric: str | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """How robust a claimed ordering of conditions is to the prompt's format: per (model, task, format), whether
    scenario ``better`` (e.g. ``"3-shot"`` or ``"fine-tuned"``) scores strictly above ``worse`` (e.g. ``"0-shot"``)
    on all items (``holds``) and in which share of ``n_resamples`` paired item resamples (``share``); and a row
    per (model, task) with ``format="all"``: the share of all (format, draw) pairs. The draws are
    ``numpy.random.default_rng(seed).integers(0, n, size=(n_resamples, n))``, one set per (model, task), shared by
    both conditions and every format. The orderings worth checking are the ones the study's Table 2 reports, e.g.
    few-shot over zero-shot for GPT-4-Turbo and fine-tuned over zero-shot for the open models."""
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    rows_of_metric = _rows(table, metric)
    for name, condition in (("better", better), ("worse", worse)):
        check_choice(f"scenario for {name!r}", condition, rows_of_metric["scenario"].unique())
    values, rows = _ItemValues(), []
    for (model, task), group in rows_of_metric.groupby(["model", "task"], sort=False):
        runs = group.pivot_table(index="format", columns="scenario", values="run", aggfunc="first", sort=False)
        if better in runs and worse in runs:
            label = {"model": model, "task": task, "metric": group["metric"].iloc[0], "better": better, "worse": worse}
            rows += _ordering_rows(runs[[better, worse]].dropna(), label, values, n_resamples, seed)
    return pd.DataFrame(rows)


def _ordering_rows(
    runs: pd.DataFrame, label: dict[str, str], values: _ItemValues, n_resamples: int, seed: int
) -> list[dict[str, Any]]:
    """:func:`ordering_holds`'s rows for one (model, task): ``runs`` holds the (better, worse) run of each format."""
    rows, held = [], []
    for fmt, (run_better, run_worse) in runs.iterrows():
        (first, shared, how), (second, _, _) = values(run_better, label["metric"]), values(run_worse, label["metric"])
        draws = np.random.default_rng(seed).integers(0, len(first), size=(n_resamples, len(first)))
        held.append(_holds_per_draw(first, second, shared, how, draws))
        better_value, worse_value = how.statistic(first, *shared), how.statistic(second, *shared)
        rows.append(
            {
                **label,
                "format": fmt,
                "better_value": float(better_value),
                "worse_value": float(worse_value),
                "holds": bool(better_value > worse_value),
                "share": float(held[-1].mean()),
                "draws": n_resamples,
            }
        )
    if rows:
        overall = {
            "holds": all(r["holds"] for r in rows),
            "share": float(np.mean(held)),
            "draws": len(held) * n_resamples,
        }
        rows.append({**label, "format": "all", **overall})
    return rows


_USAGE = ("requests", "cache_hits", "model_calls", "prompt_tokens", "completion_tokens")


def sweep_cost(table: pd.DataFrame) -> pd.DataFrame:
    """Tokens and time the sweep spent, from its records' manifests: per format and in a ``"total"`` row, the runs,
    requests, cache hits, model calls, prompt and completion tokens (counted for model calls only: a cache hit
    costs none) and the wall seconds of the runs; and what the sweep costs without a cache, from the records'
    per-item token counts (``sweep_prompt_tokens``, ``sweep_completion_tokens``)."""
    for column in ("format", "run"):
        if column not in table.columns:
            raise InvalidParameter(f"the table lacks column {column!r}; pass the table of run_format_sweep")
    rows = []
    for fmt, run in table.drop_duplicates("run")[["format", "run"]].itertuples(index=False):
        manifest = records.read_manifest(run)
        usage = manifest.get("usage") or {}
        counts = {key: usage.get(key, 0) for key in _USAGE}
        predictions = records.read_run(run)["predictions"]
        full = {
            f"sweep_{name}": int(pd.to_numeric(predictions.get(name), errors="coerce").fillna(0).sum())
            for name in ("prompt_tokens", "completion_tokens")
        }
        rows.append({"format": fmt, "runs": 1, **counts, **full, "wall_seconds": manifest.get("wall_seconds", 0.0)})
    per_format = pd.DataFrame(rows).groupby("format", sort=False).sum().reset_index()
    total = {"format": "total", **{c: per_format[c].sum() for c in per_format.columns if c != "format"}}
    return pd.concat([per_format, pd.DataFrame([total])], ignore_index=True)


__all__ = [
    "DESIGNS",
    "FACTORS",
    "LABEL_WORDS",
    "MAX_FORMATS",
    "RANK_FLIP_COLUMNS",
    "SEPARATORS",
    "SPREAD_COLUMNS",
    "PromptFormat",
    "alternative_label_words",
    "check_prompt_format",
    "format_grid",
    "format_spread",
    "ordering_holds",
    "rank_flips",
    "run_format_sweep",
    "sweep_cost",
]
