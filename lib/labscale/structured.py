"""The structured-tasks chapter's analyses: text-to-SQL and ViGGO run records read back, the SQL evaluators compared,
SQL errors sorted by kind, and cost beside quality with the companion study's published costs.

Everything here reads run records (:mod:`labscale.records`) written by the run protocol; nothing runs a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .core import Example
from .errors import InvalidParameter
from .metrics import proportion_of
from .records import find_runs, metrics_table, read_run
from .sql_eval import ERROR_TYPES

#: the quality metric each structured task is judged by in the cost-quality view
QUALITY_METRICS = {"text_to_sql": "execution_accuracy", "viggo": "exact_match", "viggo_nlg": "rouge_l"}


def _task_runs(root: str | Path, task: str) -> list[dict[str, Any]]:
    """The evaluation records of ``task`` under ``root``; only their params are read to choose them."""
    chosen = []
    for path in find_runs(root):
        params = path / "params.json"
        if params.is_file() and json.loads(params.read_text()).get("task") == task:
            run = read_run(path)
            if run["manifest"].get("kind", "run") != "finetune":
                chosen.append(run)
    return chosen


def _kappa(both: int, first_only: int, second_only: int, neither: int) -> float:
    """Cohen's kappa of two binary judgements from their 2x2 counts; NaN when chance agreement is total."""
    n = both + first_only + second_only + neither
    observed = (both + neither) / n
    p_first, p_second = (both + first_only) / n, (both + second_only) / n
    expected = p_first * p_second + (1 - p_first) * (1 - p_second)
    return math.nan if expected >= 1 else (observed - expected) / (1 - expected)


def sql_agreement(root: str | Path) -> pd.DataFrame:
    """Per text-to-SQL run under ``root``: how often normalised exact match and test-suite execution agree, item by
    item. Columns: model, scenario, items, both right, exact only, execution only, both wrong, agreement (with its
    exact interval) and Cohen's kappa (NaN when one evaluator is constant)."""
    rows = []
    for run in _task_runs(root, "text_to_sql"):
        scores = pd.DataFrame(list(run["predictions"]["scores"]))
        exact, execution = scores["exact"].astype(bool), scores["execution"].astype(bool)
        counts = {
            "both right": int((exact & execution).sum()),
            "exact only": int((exact & ~execution).sum()),
            "execution only": int((~exact & execution).sum()),
            "both wrong": int((~exact & ~execution).sum()),
        }
        agree = proportion_of((exact == execution).to_numpy())
        rows.append(
            {
                "model": run["params"]["model"],
                "scenario": run["params"]["scenario"],
                "items": len(scores),
                **counts,
                "agreement": agree["value"],
                "agreement_low": agree["ci_low"],
                "agreement_high": agree["ci_high"],
                "kappa": _kappa(*counts.values()),
            }
        )
    return pd.DataFrame(rows)


def sql_errors(plan: Any) -> pd.DataFrame:
    """Per text-to-SQL run of ``plan`` (:class:`~labscale.runner.ExperimentPlan`): how many replies are wrong (their
    recorded execution score is 0) and what differs from the gold query
    (:func:`labscale.tasks.text_to_sql.error_table`: :data:`labscale.sql_eval.ERROR_TYPES`, one query may show
    several, and replies without a query). Empty when the plan has no text-to-SQL task."""
    from .tasks.text_to_sql import error_table

    if "text_to_sql" not in _planned(plan):
        return pd.DataFrame()
    by_id = {ex.id: ex for ex in plan.task_plan("text_to_sql").items}
    rows = []
    for run in _task_runs(plan.output_dir, "text_to_sql"):
        predictions = run["predictions"]
        unknown = [i for i in predictions["id"] if i not in by_id]
        if unknown:
            raise InvalidParameter(f"run {run['path']} holds item {unknown[0]!r}, which this plan does not evaluate")
        counts = error_table([by_id[i] for i in predictions["id"]], list(predictions["parsed"]))
        wrong = sum(1 for scores in predictions["scores"] if not scores["execution"])
        rows.append(
            {
                "model": run["params"]["model"],
                "scenario": run["params"]["scenario"],
                "wrong": wrong,
                **{kind: counts.get(kind, 0) for kind in ("invalid", *ERROR_TYPES)},
            }
        )
    return pd.DataFrame(rows)


def _planned(plan: Any) -> list[str]:
    return [tp.task.name for tp in plan.tasks]


def prompt_preview(plan: Any, task: str, shots: int = 1) -> str:
    """Every turn of ``task``'s prompt for the first planned item with ``shots`` fixed shots, as the model sees them;
    empty when the plan does not have ``task``."""
    if task not in _planned(plan):
        return ""
    tp = plan.task_plan(task)
    messages = tp.task.messages(tp.items[0], tp.task.shots(tp.data, shots))
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def examples_side_by_side(plan: Any, task: str, n: int = 3) -> pd.DataFrame:
    """The first ``n`` items of ``plan``'s sample of ``task`` with the gold answer and each run's parsed reply, one row
    per item; empty when the plan does not have ``task``."""
    if task not in _planned(plan):
        return pd.DataFrame()
    by_id = {ex.id: ex for ex in plan.task_plan(task).items}
    table: dict[str, dict[str, str]] = {}
    for run in _task_runs(plan.output_dir, task):
        column = f"{run['params']['model']} {run['params']['scenario']}"
        for item_id, parsed in list(zip(run["predictions"]["id"], run["predictions"]["parsed"], strict=True))[:n]:
            example = by_id.get(item_id)
            row = table.setdefault(item_id, {"input": _input_text(example), "gold": example.target if example else ""})
            row[column] = parsed
    return pd.DataFrame.from_dict(table, orient="index")


def _input_text(example: Example | None) -> str:
    if example is None:
        return ""
    fields = example.fields
    return fields.get("question") or fields.get("sentence") or fields.get("mr") or ""


def cost_quality(
    runs_root: str | Path,
    *,
    finetune_records: Iterable[str | Path] = (),
    gpu: str = "a40",
    as_of: Any = None,
    metrics: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Each structured-task run and fine-tune priced (:func:`labscale.cost.cost_table`: local hours x ``gpu``'s
    hourly price, API tokens x the dated price) with its quality and interval (:func:`labscale.cost.join_quality`,
    the metric of :data:`QUALITY_METRICS` per task). One frame for all tasks, ``metric`` naming each row's."""
    from . import cost

    chosen = {**QUALITY_METRICS, **(metrics or {})}
    scores = metrics_table(runs_root)
    tasks = [t for t in sorted(set(scores["task"])) if t in chosen]
    costs = cost.cost_table(
        runs_root, gpu=gpu, as_of=as_of, task=None, finetune_records=list(finetune_records), price_map="listed"
    )
    frames = []
    for task in tasks:
        rows = costs[costs["task"] == task] if not costs.empty else costs
        if rows.empty:
            continue
        joined = cost.join_quality(rows, scores[scores["task"] == task], chosen[task])
        joined["metric"] = chosen[task]
        frames.append(joined)
    if not frames:
        raise InvalidParameter(f"no structured-task run records under {str(runs_root)!r} (tasks: {sorted(chosen)})")
    return pd.DataFrame.from_records([row for frame in frames for row in frame.to_dict("records")])


def api_finetune_estimate(
    task: str, data: Any, *, epochs: int = 3, as_of: Any = None, base: str = "ft:gpt-3.5-turbo"
) -> dict[str, Any]:
    """What fine-tuning GPT-3.5 on ``data``'s train split would cost, offline: the chat fine-tuning file is built as
    :func:`labscale.api_finetune.build_jsonl` would upload it, its tokens counted, times ``epochs`` (OpenAI's default
    for a few thousand examples was 3), times the dated training price. An estimate, labelled as one."""
    from . import cost
    from .api_finetune import build_jsonl
    from .errors import check_range

    check_range("epochs", epochs, 1, 50, integer=True)
    _, n_examples, stats = build_jsonl(task, data, "train")
    price = cost.price("api_training_per_1k", base, as_of)
    billed = stats["estimated_tokens"] * epochs
    return {
        "task": task,
        "examples": n_examples,
        "tokens per epoch": stats["estimated_tokens"],
        "token method": stats["token_method"],
        "epochs": epochs,
        "billed tokens": billed,
        "usd per 1k": price,
        "estimated usd": billed / 1000 * price,
    }


def finetune_configs(
    plan: Any, tasks: Sequence[str], preset: str = "cpu", *, examples: int | None = None, **options: Any
) -> dict[str, Any]:
    """One :class:`~labscale.finetune.FinetuneConfig` per task of ``tasks``: ``preset`` with ``options``, and, when
    ``examples`` is given, ``train_fraction`` set so that about that many training examples of the plan's data are
    used (the tasks' train splits differ tenfold in size). Validated before anything trains."""
    from .errors import check_range
    from .finetune import FinetuneConfig

    if examples is not None:
        check_range("examples", examples, 1, None, integer=True)
    loaded = {tp.task.name: tp.data for tp in plan.tasks}
    configs = {}
    for task in tasks:
        if task not in loaded:
            raise InvalidParameter(f"task {task!r} to fine-tune is not in the plan; planned tasks: {sorted(loaded)}")
        train = len(loaded[task].splits.get("train") or [])
        fraction = min(1.0, examples / train) if examples is not None and train else options.get("train_fraction", 1.0)
        configs[task] = FinetuneConfig.preset(preset, **{**options, "train_fraction": fraction})
    return configs
