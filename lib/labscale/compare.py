"""Paired comparisons of two runs on the same items, read back from their run records.

A claim that one condition beats another (k shots vs zero-shot, fine-tuned vs base, an adapter vs its base model)
is a paired difference: both runs answered the same items, so :func:`paired_comparison` rescores each run's
recorded replies per item, checks that the rescoring reproduces the recorded metric, and gives the difference:
for a share of 0/1 outcomes (accuracy, invalid rate, abstention rate, exact match) with Tango's score interval for
paired proportions and the exact McNemar p-value (:func:`labscale.metrics.paired_proportion_difference`);
for everything else with a BCa interval over items resampled once for both runs and a paired permutation p-value
(:func:`labscale.metrics.paired_difference`). :func:`scenario_comparisons` does this for every scenario of a
results table against a baseline scenario and adjusts the p-values for multiplicity (Holm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import records
from .core import Scenario
from .errors import InvalidParameter, check_range
from .metrics import (
    ROUGE_TYPES,
    _bertscore_f1,
    _binary_f1,
    _binary_outcomes,
    _mean,
    bleu_statistics,
    corpus_bleu,
    f1_average,
    holm,
    paired_difference,
    paired_proportion_difference,
    rouge_fmeasures,
    summary_hypotheses,
)
from .tasks import INVALID, Example, get_task


@dataclass(frozen=True)
class Rescoring:
    """How to rescore one metric per item: per-item ``values`` of a run's replies (one value or row per item),
    arrays ``shared`` by both runs (gold labels, group membership), and the ``statistic`` of (values, *shared)
    whose value on all items is the recorded metric."""

    values: Callable[[Sequence[Example], Sequence[str]], np.ndarray]
    statistic: Callable[..., float]
    shared: Callable[[Sequence[Example]], tuple[np.ndarray, ...]] = lambda examples: ()
    #: True when the metric is the share of 0/1 outcomes: its difference gets a paired-proportion score interval
    proportion: bool = False


def _flags(test: Callable[[Example, str], bool]) -> Callable[[Sequence[Example], Sequence[str]], np.ndarray]:
    return lambda examples, parsed: np.array([test(ex, p) for ex, p in zip(examples, parsed, strict=True)], dtype=float)


def _positive_f1(positive: str, negative: str) -> Rescoring:
    """F1 of ``positive`` from per-item (tp, fp, fn, tn, invalid) rows, as
    :func:`~labscale.metrics.binary_classification_metrics` scores it (an unparseable reply wrong everywhere)."""
    return Rescoring(
        lambda examples, parsed: _binary_outcomes([ex.target for ex in examples], parsed, positive, negative),
        _binary_f1,
    )


def _multiclass_f1(labels: Sequence[str], average: str) -> Rescoring:
    """Weighted or macro F1 over ``labels`` (anything else: an extra, always-wrong class)."""
    code = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    return Rescoring(
        lambda examples, parsed: np.array([code.get(p, k) for p in parsed]),
        lambda pred, gold: f1_average(gold, pred, k, average),
        lambda examples: (np.array([code[ex.target] for ex in examples]),),
    )


def _worst_group(groups: Callable[[Example], Sequence[bool]]) -> Rescoring:
    def worst(correct: np.ndarray, member: np.ndarray) -> float:
        counts = member.sum(axis=0)
        accs = (correct[:, None].astype(bool) & member).sum(axis=0)[counts > 0] / counts[counts > 0]
        return float(accs.min())

    return Rescoring(
        _flags(lambda ex, p: p == ex.target),
        worst,
        lambda examples: (np.array([groups(ex) for ex in examples], dtype=bool),),
    )


def _item_score(task: Any, key: str, proportion: bool = False) -> Rescoring:
    """A per-item score from the task's own ``item_scores`` (QASPER and SQuAD answer F1 / exact match)."""
    return Rescoring(
        lambda examples, parsed: np.asarray(task.item_scores(examples, parsed)[key], dtype=float),
        _mean,
        proportion=proportion,
    )


def _summary_scores(metric: str, bertscore_model: str | None = None) -> Rescoring:
    """Per-item ROUGE F-measure or BERTScore F1 (with the run's encoder) of each summary against its reference, or
    corpus BLEU from per-item statistics, as :func:`~labscale.metrics.summarization_metrics` scores them."""

    def values(examples: Sequence[Example], parsed: Sequence[str]) -> np.ndarray:
        hyps, refs = summary_hypotheses(parsed)[0], [str(ex.target) for ex in examples]
        if metric == "bleu":
            return bleu_statistics(refs, hyps)
        if metric == "bertscore_f1":
            return _bertscore_f1(refs, hyps, bertscore_model, None)[0]
        return rouge_fmeasures(refs, hyps, [metric])[metric]

    return Rescoring(values, corpus_bleu if metric == "bleu" else _mean)


#: metric -> per-item score (the task's ``item_scores``) of the structured tasks
STRUCTURED_ITEM_SCORES = {
    "text_to_sql": {"execution_accuracy": "execution", "exact_match": "exact", "valid_rate": "valid"},
    "viggo": {"exact_match": "exact", "strict_exact_match": "strict_exact", "function_accuracy": "function_correct"},
    "viggo_nlg": {"slot_error_rate": "slot_error_rate", "rouge_l": "rouge_l"},
}


def _micro_f1(rows: np.ndarray) -> float:
    """Micro F1 of summed (tp, fp, fn) rows."""
    tp, fp, fn = rows.sum(axis=0)
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def rescoring(task_name: str, metric: str, options: dict[str, Any] | None = None) -> Rescoring:
    """How ``metric`` of ``task_name`` is rescored per item (``options``: the run's task options, e.g. its BERTScore
    encoder); an error naming the pairable metrics otherwise."""
    task = get_task(task_name)
    found: dict[str, Rescoring] = {
        "accuracy": Rescoring(_flags(lambda ex, p: p == ex.target), _mean, proportion=True),
        "invalid_rate": Rescoring(_flags(lambda ex, p: p == INVALID), _mean, proportion=True),
    }
    if task_name in BINARY_LABELS:
        found["f1"] = _positive_f1(*BINARY_LABELS[task_name])
    if task_name == "fact_checking":
        from .tasks.fact_checking import LABELS

        found.update(f1_weighted=_multiclass_f1(LABELS, "weighted"), f1_macro=_multiclass_f1(LABELS, "macro"))
    if task_name == "toxicity":
        from .tasks.toxicity import cell_membership

        found["worst_group_accuracy"] = _worst_group(cell_membership)
    if task_name in ("qasper", "squad_v2"):
        from .tasks.qasper import UNANSWERABLE

        found = {
            "invalid_rate": found["invalid_rate"],
            "abstention_rate": Rescoring(_flags(lambda ex, p: p == UNANSWERABLE), _mean, proportion=True),
        }
        names = {"answer_f1": "f1"} if task_name == "qasper" else {"f1": "f1", "exact": "exact"}
        found.update({name: _item_score(task, key, proportion=key == "exact") for name, key in names.items()})
    if task_name == "summarization":
        found = {
            "invalid_rate": Rescoring(
                lambda examples, parsed: summary_hypotheses(parsed)[1].astype(float), _mean, proportion=True
            ),
            **{
                m: _summary_scores(m, (options or {}).get("bertscore_model"))
                for m in ("bleu", *ROUGE_TYPES, "bertscore_f1")
            },
        }
    if task_name in STRUCTURED_ITEM_SCORES:
        found = {"invalid_rate": found["invalid_rate"]}
        for name, key in STRUCTURED_ITEM_SCORES[task_name].items():
            found[name] = _item_score(task, key, proportion=name not in ("slot_error_rate", "rouge_l"))
        if task_name == "viggo":
            found["slot_f1"] = Rescoring(
                lambda examples, parsed: np.column_stack(
                    [task.item_scores(examples, parsed)[key] for key in ("tp", "fp", "fn")]
                ),
                _micro_f1,
            )
    if metric not in found:
        raise InvalidParameter(
            f"metric {metric!r} of task {task_name!r} cannot be compared per item; valid "
            f"choices: {', '.join(map(repr, sorted(found)))}"
        )
    return found[metric]


def _binary_labels() -> dict[str, tuple[str, str]]:
    from .tasks.entity_resolution import NEGATIVE, POSITIVE
    from .tasks.medqa_tf import FALSE, TRUE
    from .tasks.toxicity import NONTOXIC, TOXIC

    return {"entity_resolution": (POSITIVE, NEGATIVE), "toxicity": (TOXIC, NONTOXIC), "medqa_tf": (TRUE, FALSE)}


#: the (positive, negative) labels of the binary tasks, whose F1 is the positive class's
BINARY_LABELS = _binary_labels()


def run_examples(record: dict[str, Any]) -> list[Example]:
    """The examples a run record answered, in its prediction order, reloaded from the data source its params name
    and checked against the content hash in its manifest."""
    params = record["params"]
    task = get_task(params["task"])
    data = task.load(
        params["source"],
        path=params.get("data_path"),
        seed=params.get("data_seed", 0),
        **(params.get("task_options") or {}),
    )
    if data.content_hash != record["manifest"]["data"]["content_sha256"]:
        raise InvalidParameter(
            f"the data reloaded for {str(record['path'])!r} differs from the data the run used "
            "(content hash mismatch); rerun the experiment"
        )
    by_id = {ex.id: ex for exs in data.splits.values() for ex in exs}
    missing = [i for i in record["predictions"]["id"] if i not in by_id]
    if missing:
        raise InvalidParameter(
            f"{len(missing)} item(s) of {str(record['path'])!r} are not in the reloaded data, e.g. {missing[0]!r}"
        )
    return [by_id[i] for i in record["predictions"]["id"]]


class _Baseline:
    """A baseline run read and its data reloaded once, and each run's per-item values rescored once per metric, so
    that any number of runs of the same task and items compare against it without repeating that work."""

    def __init__(self, baseline: str | Path):
        self.record = records.read_run(baseline)
        self.examples = run_examples(self.record)
        self.order = {i: k for k, i in enumerate(self.record["predictions"]["id"])}
        self.options = self.record["params"].get("task_options") or {}
        self._values: dict[tuple[str, str], np.ndarray] = {}

    def check(self, record: dict[str, Any]) -> None:
        """Refuse a run of another task, data, item set or BERTScore encoder."""
        if record["params"]["task"] != self.record["params"]["task"]:
            raise InvalidParameter(
                f"a paired comparison needs two runs of one task, got "
                f"{sorted({record['params']['task'], self.record['params']['task']})}"
            )
        if record["manifest"]["data"]["content_sha256"] != self.record["manifest"]["data"]["content_sha256"] or sorted(
            record["predictions"]["id"]
        ) != sorted(self.order):
            raise InvalidParameter(
                f"{str(record['path'])!r} and {str(self.record['path'])!r} did not answer the same "
                "items of the same data; rerun both with the same source, limit and seed"
            )
        if (record["params"].get("task_options") or {}).get("bertscore_model") != self.options.get("bertscore_model"):
            raise InvalidParameter("the two runs scored BERTScore with different encoders; compare runs of one encoder")

    def values(self, record: dict[str, Any], metric: str, how: Rescoring, shared: tuple) -> np.ndarray:
        """``record``'s per-item values of ``metric`` in the baseline's item order, checked against the recorded
        value (a stale record raises)."""
        key = (str(record["path"]), metric)
        if key not in self._values:
            predictions = record["predictions"]
            parsed = predictions.assign(_k=predictions["id"].map(self.order)).sort_values("_k")["parsed"]
            values = how.values(self.examples, parsed.astype(str).tolist())
            rescored, recorded = how.statistic(values, *shared), record["metrics"][metric]["value"]
            if abs(rescored - recorded) > 1e-6:
                raise InvalidParameter(
                    f"rescoring {metric} of {str(record['path'])!r} gives {rescored:.6f}, not the "
                    f"recorded {recorded:.6f}; the record is stale: rerun it"
                )
            self._values[key] = values
        return self._values[key]

    def compare(self, record: dict[str, Any], metric: str, *, n_resamples: int, seed: int) -> dict[str, Any]:
        """``metric`` of ``record`` minus the baseline's, paired over items (see :func:`paired_comparison`)."""
        self.check(record)
        how = rescoring(self.record["params"]["task"], metric, self.options)
        shared = how.shared(self.examples)
        mine, theirs = (self.values(r, metric, how, shared) for r in (record, self.record))
        both = {
            "run_value": float(how.statistic(mine, *shared)),
            "baseline_value": float(how.statistic(theirs, *shared)),
        }
        if how.proportion:
            return paired_proportion_difference(mine, theirs, **both)
        return paired_difference(how.statistic, mine, theirs, *shared, n_resamples=n_resamples, seed=seed, **both)


def paired_comparison(
    run: str | Path, baseline: str | Path, metric: str, *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """``metric`` of ``run`` minus that of ``baseline`` over the items both answered, from their run records.

    Both runs must be of the same task on the same data and items. Each run's recorded replies are rescored per item
    (:func:`rescoring`); the rescored value must equal the recorded one (else the records are stale and this
    raises). Returns the :func:`~labscale.metrics.paired_difference` dict plus both conditions' values."""
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    return _Baseline(baseline).compare(records.read_run(run), metric, n_resamples=n_resamples, seed=seed)


def scenario_comparisons(
    table: pd.DataFrame,
    *,
    by: str = "scenario",
    baseline: str = Scenario.ZERO_SHOT.value,
    within: Sequence[str] = ("model", "task"),
    metrics: dict[str, Sequence[str]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every condition of a results table (:func:`labscale.records.metrics_table`; the condition is the column
    ``by``, e.g. ``scenario`` or a DP table's ``adapter``) minus the ``baseline`` condition with the same values of
    ``within`` (model and task; a DP table, whose adapters are different models, pairs ``within=("task",)``), per
    headline metric (or ``metrics``: task -> names), with paired BCa intervals, permutation p-values and
    Holm-adjusted p-values over all rows returned (one family per table)."""
    from .report import headline_metrics

    for column in (by, *within):
        if column not in table.columns:
            raise InvalidParameter(
                f"the table has no column {column!r}; valid choices: {', '.join(map(repr, table.columns))}"
            )
    if "task" not in within:
        raise InvalidParameter(f"within={list(within)!r} must include 'task': runs of different tasks do not pair")
    wanted = metrics or headline_metrics(table["task"].unique())
    within = [c for c in within if c != by]
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    rows = []
    runs = table.drop_duplicates([*within, by])
    for keys, group in runs.groupby(within, sort=False):
        base = group[group[by] == baseline]
        if base.empty:
            continue
        named = dict(zip(within, keys if isinstance(keys, tuple) else (keys,), strict=True))
        reference = _Baseline(base["run"].iloc[0])  # read and reloaded once for every condition and metric
        for condition, run in zip(group[by], group["run"], strict=True):
            if condition == baseline:
                continue
            record = records.read_run(run)
            for metric in wanted.get(named["task"], ()):
                m = reference.compare(record, metric, n_resamples=n_resamples, seed=seed)
                rows.append(
                    comparison_row(
                        m,
                        model=named.get("model", ""),
                        task=named["task"],
                        metric=metric,
                        condition=condition,
                        baseline=baseline,
                    )
                )
    return comparison_frame(rows)


#: the columns of a comparison table (:func:`scenario_comparisons`)
COMPARISON_COLUMNS = [
    "model",
    "task",
    "metric",
    "condition",
    "baseline",
    "value",
    "baseline_value",
    "delta",
    "ci_low",
    "ci_high",
    "n",
    "interval",
    "p_value",
    "p_holm",
]


def comparison_row(
    result: dict[str, Any], *, model: str, task: str, metric: str, condition: str, baseline: str
) -> dict[str, Any]:
    """One row of a comparison table from a paired result (:func:`paired_comparison`, or a
    :func:`~labscale.metrics.paired_difference` / :func:`~labscale.metrics.paired_proportion_difference` dict
    carrying ``run_value`` and ``baseline_value``) and the labels of what was compared."""
    return {
        "model": model,
        "task": task,
        "metric": metric,
        "condition": condition,
        "baseline": baseline,
        "value": result["run_value"],
        "baseline_value": result["baseline_value"],
        "delta": result["value"],
        "ci_low": result["ci_low"],
        "ci_high": result["ci_high"],
        "n": result["n"],
        "interval": result["interval"],
        "p_value": result["p_value"],
    }


def comparison_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """A comparison table (:data:`COMPARISON_COLUMNS`) of :func:`comparison_row` rows, Holm-adjusted as one family."""
    return with_holm(pd.DataFrame(list(rows), columns=COMPARISON_COLUMNS[:-1]))


def with_holm(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` with ``p_holm``: its ``p_value`` column adjusted for multiplicity as one family (Holm)."""
    out = comparisons.copy()
    out["p_holm"] = holm(out["p_value"].to_numpy()) if len(out) else []
    return out
