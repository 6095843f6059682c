"""Data-size sweeps (the study's RQ3): how much task data does a small model need?

Two designs, as in the study (Section 3, Fig. 2):

* :func:`checkpoint_curve` evaluates the checkpoints one fine-tune kept every N training samples (the study's
  fact-checking sweep: a checkpoint every 500 samples). One training run, many evaluations.
* :func:`fraction_sweep` fine-tunes separately on nested fractions of the training set (the study's 0-100 %
  sweep, and its only option for GPT-3.5-Turbo, which keeps no checkpoints). One training run per point.

Both evaluate every point zero-shot through :func:`labscale.runner.run_experiment` (so through the response
cache, into ordinary run records) and return one tidy table with the training-size columns ``samples``
(training examples seen), ``train_examples`` (distinct examples), ``fraction`` and ``epochs`` beside the usual
metric columns with their bootstrap 95 % intervals. Point 0 is the base model, zero-shot.

:func:`first_reaching` finds where a curve first reaches a reference score (for example the study's few-shot
GPT-4-Turbo, :func:`study_reference`), by its estimate and, more strictly, by its lower confidence bound.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InvalidParameter, check_range

CURVE_COLUMNS = [
    "design",
    "point",
    "samples",
    "train_examples",
    "fraction",
    "epochs",
    "model",
    "task",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "run",
]


def evaluate_zero_shot(
    base_model: str,
    task: str,
    adapter: str | None,
    *,
    output_dir: Path,
    data: Mapping[str, Any],
    limit: int | None,
    seed: int,
    n_resamples: int,
    max_new_tokens: Mapping[str, int] | None,
    cache,
    progress: bool,
) -> pd.DataFrame:
    """One point: the base model zero-shot (``adapter=None``) or the adapter's fine-tuned run, on the data described
    by ``data`` (source, data_path, task_options, data_seed and, to refuse other data, data_sha256)."""
    from .runner import plan_experiment, run_experiment

    plan = plan_experiment(
        [base_model],
        [task],
        [] if adapter else [0],
        limit=limit,
        seed=seed,
        source=data["source"],
        data_path=data.get("data_path"),
        task_options={task: data.get("task_options") or {}},
        data_seed=data["data_seed"],
        output_dir=output_dir,
        name="learning_curve",
        n_resamples=n_resamples,
        max_new_tokens=max_new_tokens,
        adapters={task: adapter} if adapter else None,
        cache=cache,
    )
    expected = data.get("data_sha256")
    actual = plan.tasks[0].data.content_hash
    if expected and actual != expected:
        raise InvalidParameter(
            f"the evaluation data (sha256 {actual[:12]}) is not the data the adapter was trained "
            f"on (sha256 {expected[:12]}); pass the same source, data_path and data_seed"
        )
    return run_experiment(plan, progress=progress)


def _read_request(finetune_dir: Path) -> dict[str, Any]:
    from .finetune import REQUEST_FILE

    path = finetune_dir / REQUEST_FILE
    if not path.is_file():
        raise InvalidParameter(
            f"{str(finetune_dir)!r} is not a labscale fine-tuning folder (no {REQUEST_FILE}); "
            "pass the output_dir given to labscale.finetune.finetune"
        )
    return json.loads(path.read_text())


def _point_rows(table: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    table = table.copy()
    for name, value in columns.items():
        table[name] = value
    return table


def checkpoint_curve(
    finetune_dir: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    output_dir: str | Path = "runs/learning_curve",
    include_base: bool = True,
    include_final: bool = True,
    n_resamples: int = 1000,
    max_new_tokens: Mapping[str, int] | None = None,
    cache=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every checkpoint of one fine-tune (run with ``checkpoint_every_samples``), zero-shot, on the test
    split of the data it was trained on; returns the tidy curve (:data:`CURVE_COLUMNS`).

    The base model, data source, ``data_path``, ``data_seed`` and task options are read from the fine-tune's
    request file, so the curve cannot silently mix data; ``limit`` and ``seed`` draw the evaluation items.
    Each point's run record goes to ``output_dir/samples-<n>``.
    """
    from .finetune import CARD_FILE, list_checkpoints

    finetune_dir = Path(finetune_dir)
    request = _read_request(finetune_dir)
    checkpoints = list_checkpoints(finetune_dir)
    final = finetune_dir / "adapter"
    if include_final and (final / CARD_FILE).is_file():
        card = json.loads((final / CARD_FILE).read_text())
        done = {c["step"] for c in checkpoints}
        if card["steps"]["global_step"] not in done:
            checkpoints.append(
                {"step": card["steps"]["global_step"], "samples": card["steps"]["samples"], "path": str(final)}
            )
    if not checkpoints:
        raise InvalidParameter(
            f"{str(finetune_dir)!r} has no checkpoints to evaluate: fine-tune with "
            "checkpoint_every_samples=N (or let the fine-tune finish)"
        )
    plan = request["plan"]
    n_examples = plan["n_examples"]
    base_model = request["base_model"]["spec"]
    data = {**request, "data_path": request.get("data_path")}
    out = Path(output_dir)
    points = ([{"step": 0, "samples": 0, "path": None}] if include_base else []) + checkpoints
    tables = []
    for point in points:
        table = evaluate_zero_shot(
            base_model,
            request["task"],
            point["path"],
            output_dir=out / f"samples-{point['samples']:06d}",
            data=data,
            limit=limit,
            seed=seed,
            n_resamples=n_resamples,
            max_new_tokens=max_new_tokens,
            cache=cache,
            progress=progress,
        )
        tables.append(
            _point_rows(
                table,
                design="checkpoints",
                point="base" if point["path"] is None else f"step {point['step']}",
                samples=point["samples"],
                train_examples=n_examples if point["samples"] else 0,
                fraction=request["config"]["train_fraction"] if point["samples"] else 0.0,
                epochs=round(point["samples"] / n_examples, 4),
            )
        )
    return pd.concat(tables, ignore_index=True)[CURVE_COLUMNS]


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Sorted unique fractions, each in [0, 1] (0 = the base model, untrained)."""
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
        raise InvalidParameter(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
    for f in fractions:
        check_range("train fraction", f, 0.0, 1.0)
    return sorted(set(float(f) for f in fractions))


def fraction_sweep(
    base_model: str,
    task: str,
    fractions: Sequence[float],
    *,
    config,
    finetune_root: str | Path = "runs/adapters/sweep",
    source: str = "offline",
    data_path: str | Path | None = None,
    data_seed: int = 0,
    task_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
    output_dir: str | Path = "runs/learning_curve_fractions",
    n_resamples: int = 1000,
    max_new_tokens: Mapping[str, int] | None = None,
    cache=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fine-tune ``base_model`` separately on each fraction of ``task``'s training split (nested subsets, same
    seed) and evaluate each adapter zero-shot; fraction 0 is the base model. Returns the tidy curve.

    Every fraction is checked against the training-set size (at least one optimizer batch) before anything
    trains, so an impossible sweep fails at once.
    """
    from .finetune import FinetuneConfig, check_train_size, finetune
    from .tasks import get_task

    fractions = check_fractions(fractions)
    if not isinstance(config, FinetuneConfig):
        raise InvalidParameter(f"config must be a FinetuneConfig, got {type(config).__name__}")
    data = get_task(task).load(source, path=data_path, seed=data_seed, **dict(task_options or {}))
    n_train = len(data.split("train"))
    for f in fractions:
        if f > 0:
            check_train_size(math.floor(f * n_train + 1e-9), config, f"train_fraction={f} of {n_train}")
    request = {
        "source": source,
        "data_path": str(data_path) if data_path else None,
        "data_seed": data_seed,
        "task_options": dict(task_options or {}),
        "data_sha256": data.content_hash,
    }
    tables = []
    for f in fractions:
        adapter = None
        used = 0
        epochs = 0.0
        samples = 0
        if f > 0:
            result = finetune(
                base_model,
                task,
                source=source,
                data_path=data_path,
                data_seed=data_seed,
                config=dataclasses.replace(config, train_fraction=f, checkpoint_every_samples=None),
                output_dir=Path(finetune_root) / f"fraction-{f:.4f}",
                task_options=task_options,
                progress=progress,
            )
            adapter = str(result.adapter_dir)
            steps = result.model_card["steps"]
            used, samples, epochs = result.model_card["data"]["train_used"], steps["samples"], steps["effective_epochs"]
        table = evaluate_zero_shot(
            base_model,
            task,
            adapter,
            output_dir=Path(output_dir) / f"fraction-{f:.4f}",
            data=request,
            limit=limit,
            seed=seed,
            n_resamples=n_resamples,
            max_new_tokens=max_new_tokens,
            cache=cache,
            progress=progress,
        )
        tables.append(
            _point_rows(
                table,
                design="fractions",
                point="base" if adapter is None else f"{f:.0%}",
                samples=samples,
                train_examples=used,
                fraction=f,
                epochs=epochs,
            )
        )
    return pd.concat(tables, ignore_index=True)[CURVE_COLUMNS]


def first_reaching(curve: pd.DataFrame, metric: str, reference: float, *, x: str = "samples") -> dict[str, Any]:
    """Where ``curve`` (one model and task) first reaches ``reference`` on ``metric``: the smallest ``x`` whose
    estimate is >= reference (``by_estimate``) and whose lower 95 % bound is >= reference (``by_lower_bound``);
    None where it never does. Also the best point."""
    rows = curve[curve["metric"] == metric].sort_values(x)
    if rows.empty:
        raise InvalidParameter(f"the curve has no metric {metric!r}; it has {sorted(set(curve['metric']))}")
    est = rows[rows["value"] >= reference]
    low = rows[rows["ci_low"] >= reference]
    best = rows.loc[rows["value"].idxmax()]
    return {
        "metric": metric,
        "reference": reference,
        "by_estimate": None if est.empty else est[x].iloc[0].item(),
        "by_lower_bound": None if low.empty else low[x].iloc[0].item(),
        "best_x": best[x].item(),
        "best_value": float(best["value"]),
        "best_ci": (float(best["ci_low"]), float(best["ci_high"])),
    }


def study_fig2(panel: str = "right") -> pd.DataFrame:
    """The study's Fig. 2 digitized (reference values, cited): ``panel="left"`` is LLaMA-2-7B-Chat versus the
    percentage of training data on each task (its axis says F1, but the entity-resolution point at 0 % is the
    zero-shot *accuracy* of Table 2, so that row's metric is ``accuracy``); ``"right"`` is fact-checking accuracy
    versus training samples for
    LLaMA-2, Falcon, Mistral and GPT-3.5-Turbo (separate jobs), evaluated on 150 test items."""
    if panel not in ("left", "right"):
        raise InvalidParameter(f"Fig. 2 panel must be 'left' or 'right', got {panel!r}")
    with resources.files("labscale.reference").joinpath("fig2.csv").open() as handle:
        table = pd.read_csv(handle)
    return table[table["panel"] == panel].drop(columns="panel").reset_index(drop=True)


def study_reference(task: str, metric: str, *, model: str = "gpt-4-turbo", scenario: str = "3-shot") -> float:
    """A published Table 2 value (e.g. the study's 3-shot GPT-4-Turbo accuracy on fact-checking) to mark on a
    learning curve."""
    from .report import study_table2

    table = study_table2()
    row = table[
        (table["model"] == model)
        & (table["scenario"] == scenario)
        & (table["task"] == task)
        & (table["metric"] == metric)
    ]
    if row.empty:
        raise InvalidParameter(
            f"Table 2 has no value for model={model!r}, scenario={scenario!r}, task={task!r}, "
            f"metric={metric!r}; models: {sorted(set(table['model']))}, scenarios: "
            f"{sorted(set(table['scenario']))}"
        )
    return float(row["value"].iloc[0])


def check_curve_task(curve_task: str | None, finetune_tasks: Sequence[str]) -> None:
    """A learning curve needs a fine-tune with checkpoints: ``curve_task`` must be None or a fine-tuned task."""
    if curve_task is not None and curve_task not in finetune_tasks:
        raise InvalidParameter(
            f"curve_task={curve_task!r} is not fine-tuned here; valid choices: {[None, *finetune_tasks]}"
        )


#: display names of the study's models, for the reference line's label
_STUDY_MODEL_NAMES = {
    "gpt-4-turbo": "GPT-4-Turbo",
    "gpt-3.5-turbo": "GPT-3.5-Turbo",
    "mistral-7b-instruct": "Mistral-7B-Instruct",
    "llama-2-7b-chat": "Llama-2-7B-Chat",
    "falcon-7b-instruct": "Falcon-7B-Instruct",
}


@dataclasses.dataclass
class LearningCurve:
    """A chapter's learning curve (:func:`learning_curve`): the tidy curve (:data:`CURVE_COLUMNS`), the design
    (``"checkpoints"`` or ``"fractions"``) and its x column, the metric it is read on (the task's first headline
    metric), the study's Table 2 reference score for that task and metric (None when Table 2 has none) with its
    label, and the study's Fig. 2 curves to draw beside it (None unless they measure the same thing)."""

    design: str
    task: str
    metric: str
    curve: pd.DataFrame
    x: str
    reference: float | None
    reference_label: str | None
    study: pd.DataFrame | None

    def table(self, digits: int = 2) -> pd.DataFrame:
        """The curve's points with 95 % intervals (:func:`labscale.report.curve_table`)."""
        from .report import curve_table

        return curve_table(self.curve, self.metric, digits)

    def first_reaching(self) -> dict[str, Any] | None:
        """Where the curve first reaches the reference (:func:`first_reaching`); None without a reference."""
        if self.reference is None:
            return None
        return first_reaching(self.curve, self.metric, self.reference, x=self.x)

    def plot(self, metric: str | None = None):
        """The curve on ``metric`` (default: its headline metric, with the reference line and the study's curves;
        another metric, e.g. ``"invalid_rate"``, is drawn alone); returns the figure."""
        from .plots import learning_curve as plot_curve

        if metric is None or metric == self.metric:
            return plot_curve(
                self.curve,
                self.metric,
                x=self.x,
                reference=self.reference,
                reference_label=self.reference_label,
                study=self.study,
            )
        return plot_curve(self.curve, metric, x=self.x)


def learning_curve(
    tuned: Mapping[str, Any],
    curve_task: str | None,
    *,
    fractions: Sequence[float] | None = None,
    config=None,
    limit: int | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    output_dir: str | Path = "runs/learning_curve",
    finetune_root: str | Path | None = None,
    max_new_tokens: Mapping[str, int] | None = None,
    reference_model: str = "gpt-4-turbo",
    reference_scenario: str = "3-shot",
    cache=None,
    progress: bool = True,
) -> LearningCurve | None:
    """The learning curve a chapter draws for ``curve_task`` (the study's RQ3), or None when ``curve_task`` is None.

    ``tuned`` is the chapter's fine-tunes (task -> :class:`labscale.finetune.AdapterResult`, as returned by
    :func:`labscale.finetune.finetune_tasks`); ``curve_task`` must be one of them. The design follows
    ``fractions``:

    * ``None`` (the default): :func:`checkpoint_curve` over the checkpoints that fine-tune kept (the study's
      fact-checking sweep: one training run, evaluated every ``checkpoint_every_samples``);
    * a list of fractions: :func:`fraction_sweep`, one fine-tune per fraction of the training split with the same
      base model, data (source, path, seed, options, read from the fine-tune's request file) and ``config`` as the
      chapter's fine-tune (the study's 0-100 % sweep, and its only option for a model that keeps no checkpoints).
      The adapters go to ``finetune_root`` (default: beside the fine-tune, ``<task>_fractions``).

    Every point is evaluated zero-shot on ``limit`` seeded test items into run records under ``output_dir``. The
    curve is read on the task's first headline metric; the reference is the study's ``reference_scenario``
    ``reference_model`` score on the same task and metric (Table 2; None for tasks Table 2 does not have), and the
    study's Fig. 2 fact-checking curves come along for a checkpoint curve of fact-checking accuracy."""
    from .report import study_table2
    from .tasks import get_task

    if curve_task is None:
        return None
    check_curve_task(curve_task, list(tuned))
    finetune_dir = Path(tuned[curve_task].adapter_dir).parent
    if fractions is None:
        design, x = "checkpoints", "samples"
        curve = checkpoint_curve(
            finetune_dir,
            limit=limit,
            seed=seed,
            output_dir=output_dir,
            n_resamples=n_resamples,
            max_new_tokens=max_new_tokens,
            cache=cache,
            progress=progress,
        )
    else:
        if config is None:
            raise InvalidParameter("a fraction sweep trains one adapter per fraction: pass config (a FinetuneConfig)")
        design, x = "fractions", "fraction"
        request = _read_request(finetune_dir)
        curve = fraction_sweep(
            request["base_model"]["spec"],
            curve_task,
            fractions,
            config=config,
            finetune_root=finetune_root or finetune_dir.parent / f"{finetune_dir.name}_fractions",
            source=request["source"],
            data_path=request.get("data_path"),
            data_seed=request["data_seed"],
            task_options=request.get("task_options"),
            limit=limit,
            seed=seed,
            output_dir=output_dir,
            n_resamples=n_resamples,
            max_new_tokens=max_new_tokens,
            cache=cache,
            progress=progress,
        )
    metric = get_task(curve_task).headline_metrics[0]
    table2 = study_table2()
    in_table2 = ((table2["task"] == curve_task) & (table2["metric"] == metric)).any()
    reference = (
        study_reference(curve_task, metric, model=reference_model, scenario=reference_scenario) if in_table2 else None
    )
    label = None
    if reference is not None:
        name = _STUDY_MODEL_NAMES.get(reference_model, reference_model)
        label = f"{name} {reference_scenario}, Wolfe et al. 2024 ({reference:.2f})"
    study = (
        study_fig2("right")
        if design == "checkpoints" and curve_task == "fact_checking" and metric == "accuracy"
        else None
    )
    return LearningCurve(
        design=design,
        task=curve_task,
        metric=metric,
        curve=curve,
        x=x,
        reference=reference,
        reference_label=label,
        study=study,
    )
