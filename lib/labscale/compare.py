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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import records
from .errors import InvalidParameter, check_range
from .metrics import (_bertscore_f1, _f1_per_label, _ratio, holm, paired_difference,
                      paired_proportion_difference)
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


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def _flags(test: Callable[[Example, str], bool]) -> Callable[[Sequence[Example], Sequence[str]], np.ndarray]:
    return lambda examples, parsed: np.array([test(ex, p) for ex, p in zip(examples, parsed)], dtype=float)


def _binary_f1(positive: str, negative: str) -> Rescoring:
    """F1 of ``positive`` with an unparseable reply wrong everywhere (as :func:`~labscale.metrics.
    binary_classification_metrics`): codes 1 positive, 0 negative, -1 anything else."""

    def codes(examples: Sequence[Example], parsed: Sequence[str]) -> np.ndarray:
        return np.array([1 if p == positive else 0 if p == negative else -1 for p in parsed])

    def f1(code: np.ndarray, gold: np.ndarray) -> float:
        tp = np.sum(gold & (code == 1))
        fp = np.sum(~gold & (code != 0))
        fn = np.sum(gold & (code != 1))
        return _ratio(2 * tp, 2 * tp + fp + fn)

    return Rescoring(codes, f1, lambda examples: (np.array([ex.target == positive for ex in examples]),))


def _multiclass_f1(labels: Sequence[str], average: str) -> Rescoring:
    """Weighted or macro F1 over ``labels`` (anything else: an extra, always-wrong class)."""
    code = {label: i for i, label in enumerate(labels)}
    k = len(labels)

    def f1(pred: np.ndarray, gold: np.ndarray) -> float:
        per_label, support = _f1_per_label(gold, pred, k)
        return float(per_label @ support / support.sum()) if average == "weighted" else float(per_label.mean())

    return Rescoring(lambda examples, parsed: np.array([code.get(p, k) for p in parsed]), f1,
                     lambda examples: (np.array([code[ex.target] for ex in examples]),))


def _worst_group(groups: Callable[[Example], Sequence[bool]]) -> Rescoring:
    def worst(correct: np.ndarray, member: np.ndarray) -> float:
        counts = member.sum(axis=0)
        accs = (correct[:, None].astype(bool) & member).sum(axis=0)[counts > 0] / counts[counts > 0]
        return float(accs.min())

    return Rescoring(_flags(lambda ex, p: p == ex.target), worst,
                     lambda examples: (np.array([groups(ex) for ex in examples], dtype=bool),))


def _item_score(task: Any, key: str, proportion: bool = False) -> Rescoring:
    """A per-item score from the task's own ``item_scores`` (QASPER and SQuAD answer F1 / exact match)."""
    return Rescoring(lambda examples, parsed: np.asarray(task.item_scores(examples, parsed)[key], dtype=float),
                     _mean, proportion=proportion)


def _summary_scores(metric: str, bertscore_model: str | None = None) -> Rescoring:
    """Per-item ROUGE F-measure or BERTScore F1 (with the run's encoder) of a summary against its reference (empty
    when invalid)."""

    def values(examples: Sequence[Example], parsed: Sequence[str]) -> np.ndarray:
        hyps = ["" if p == INVALID or not str(p).strip() else str(p) for p in parsed]
        refs = [str(ex.target) for ex in examples]
        if metric == "bertscore_f1":
            return _bertscore_f1(refs, hyps, bertscore_model, None)[0]
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([metric], use_stemmer=False)
        return np.array([scorer.score(r, h)[metric].fmeasure for r, h in zip(refs, hyps)])

    return Rescoring(values, _mean)


def _corpus_bleu() -> Rescoring:
    """Corpus BLEU (sacrebleu, 13a) from per-item sufficient statistics, summed over the items of a resample."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="13a")

    def values(examples: Sequence[Example], parsed: Sequence[str]) -> np.ndarray:
        hyps = ["" if p == INVALID or not str(p).strip() else str(p) for p in parsed]
        stats = bleu._extract_corpus_statistics(hyps, [[str(ex.target) for ex in examples]])
        return np.array(stats, dtype=np.int64)

    return Rescoring(values, lambda stats: bleu._compute_score_from_stats(stats.sum(axis=0).tolist()).score / 100)


def rescoring(task_name: str, metric: str, options: dict[str, Any] | None = None) -> Rescoring:
    """How ``metric`` of ``task_name`` is rescored per item (``options``: the run's task options, e.g. its BERTScore
    encoder); an error naming the pairable metrics otherwise."""
    task = get_task(task_name)
    found: dict[str, Rescoring] = {
        "accuracy": Rescoring(_flags(lambda ex, p: p == ex.target), _mean, proportion=True),
        "invalid_rate": Rescoring(_flags(lambda ex, p: p == INVALID), _mean, proportion=True),
    }
    if task_name in BINARY_LABELS:
        found["f1"] = _binary_f1(*BINARY_LABELS[task_name])
    if task_name == "fact_checking":
        from .tasks.fact_checking import LABELS

        found.update(f1_weighted=_multiclass_f1(LABELS, "weighted"), f1_macro=_multiclass_f1(LABELS, "macro"))
    if task_name == "toxicity":
        from .tasks.toxicity import CELLS, IDENTITY_THRESHOLD, TOXIC

        found["worst_group_accuracy"] = _worst_group(lambda ex: [
            (ex.meta.get(cell.split("_")[0]) or 0.0) >= IDENTITY_THRESHOLD
            and (ex.target == TOXIC) == cell.endswith("_toxic") for cell in CELLS])
    if task_name in ("qasper", "squad_v2"):
        from .tasks.qasper import UNANSWERABLE

        found = {"invalid_rate": found["invalid_rate"],
                 "abstention_rate": Rescoring(_flags(lambda ex, p: p == UNANSWERABLE), _mean, proportion=True)}
        names = {"answer_f1": "f1"} if task_name == "qasper" else {"f1": "f1", "exact": "exact"}
        found.update({name: _item_score(task, key, proportion=key == "exact") for name, key in names.items()})
    if task_name == "summarization":
        found = {"invalid_rate": Rescoring(_flags(lambda ex, p: p == INVALID or not str(p).strip()), _mean,
                                           proportion=True),
                 "bleu": _corpus_bleu(),
                 **{m: _summary_scores(m, (options or {}).get("bertscore_model"))
                    for m in ("rouge1", "rouge2", "rougeL", "bertscore_f1")}}
    if metric not in found:
        raise InvalidParameter(f"metric {metric!r} of task {task_name!r} cannot be compared per item; valid "
                               f"choices: {', '.join(map(repr, sorted(found)))}")
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
    data = task.load(params["source"], path=params.get("data_path"), seed=params.get("data_seed", 0),
                     **(params.get("task_options") or {}))
    if data.content_hash != record["manifest"]["data"]["content_sha256"]:
        raise InvalidParameter(f"the data reloaded for {str(record['path'])!r} differs from the data the run used "
                               "(content hash mismatch); rerun the experiment")
    by_id = {ex.id: ex for exs in data.splits.values() for ex in exs}
    missing = [i for i in record["predictions"]["id"] if i not in by_id]
    if missing:
        raise InvalidParameter(f"{len(missing)} item(s) of {str(record['path'])!r} are not in the reloaded data, "
                               f"e.g. {missing[0]!r}")
    return [by_id[i] for i in record["predictions"]["id"]]


def paired_comparison(run: str | Path, baseline: str | Path, metric: str, *, n_resamples: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """``metric`` of ``run`` minus that of ``baseline`` over the items both answered, from their run records.

    Both runs must be of the same task on the same data and items. Each run's recorded replies are rescored per item
    (:func:`rescoring`); the rescored value must equal the recorded one (else the records are stale and this
    raises). Returns the :func:`~labscale.metrics.paired_difference` dict plus both conditions' values."""
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    runs = [records.read_run(run), records.read_run(baseline)]
    tasks = {r["params"]["task"] for r in runs}
    if len(tasks) != 1:
        raise InvalidParameter(f"a paired comparison needs two runs of one task, got {sorted(tasks)}")
    hashes = {r["manifest"]["data"]["content_sha256"] for r in runs}
    ids = [list(r["predictions"]["id"]) for r in runs]
    if len(hashes) != 1 or sorted(ids[0]) != sorted(ids[1]):
        raise InvalidParameter(f"{str(run)!r} and {str(baseline)!r} did not answer the same items of the same data; "
                               "rerun both with the same source, limit and seed")
    options = [r["params"].get("task_options") or {} for r in runs]
    if options[0].get("bertscore_model") != options[1].get("bertscore_model"):
        raise InvalidParameter("the two runs scored BERTScore with different encoders; compare runs of one encoder")
    how = rescoring(tasks.pop(), metric, options[1])
    examples = run_examples(runs[1])
    order = {i: k for k, i in enumerate(ids[1])}
    aligned = [r["predictions"].assign(_k=r["predictions"]["id"].map(order)).sort_values("_k") for r in runs]
    values = [how.values(examples, p["parsed"].astype(str).tolist()) for p in aligned]
    shared = how.shared(examples)
    for v, r in zip(values, runs):
        recorded = r["metrics"][metric]["value"]
        if abs(how.statistic(v, *shared) - recorded) > 1e-6:
            raise InvalidParameter(f"rescoring {metric} of {str(r['path'])!r} gives {how.statistic(v, *shared):.6f}, "
                                   f"not the recorded {recorded:.6f}; the record is stale: rerun it")
    if how.proportion:
        out = paired_proportion_difference(values[0], values[1])
    else:
        out = paired_difference(how.statistic, values[0], values[1], *shared, n_resamples=n_resamples, seed=seed)
    return {**out, "run_value": float(how.statistic(values[0], *shared)),
            "baseline_value": float(how.statistic(values[1], *shared))}


def scenario_comparisons(table: pd.DataFrame, *, by: str = "scenario", baseline: str = "0-shot",
                         within: Sequence[str] = ("model", "task"), metrics: dict[str, Sequence[str]] | None = None,
                         n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every condition of a results table (:func:`labscale.records.metrics_table`; the condition is the column
    ``by``, e.g. ``scenario`` or a DP table's ``adapter``) minus the ``baseline`` condition with the same values of
    ``within`` (model and task; a DP table, whose adapters are different models, pairs ``within=("task",)``), per
    headline metric (or ``metrics``: task -> names), with paired BCa intervals, permutation p-values and
    Holm-adjusted p-values over all rows returned (one family per table)."""
    from .report import headline_metrics

    for column in (by, *within):
        if column not in table.columns:
            raise InvalidParameter(f"the table has no column {column!r}; valid choices: "
                                   f"{', '.join(map(repr, table.columns))}")
    if "task" not in within:
        raise InvalidParameter(f"within={list(within)!r} must include 'task': runs of different tasks do not pair")
    wanted = metrics or headline_metrics(table["task"].unique())
    within = [c for c in within if c != by]
    rows = []
    runs = table.drop_duplicates([*within, by])
    for keys, group in runs.groupby(within, sort=False):
        base = group[group[by] == baseline]
        if base.empty:
            continue
        named = dict(zip(within, keys if isinstance(keys, tuple) else (keys,)))
        for condition, run in zip(group[by], group["run"]):
            if condition == baseline:
                continue
            for metric in wanted.get(named["task"], ()):
                m = paired_comparison(run, base["run"].iloc[0], metric, n_resamples=n_resamples, seed=seed)
                rows.append({"model": named.get("model", ""), "task": named["task"], "metric": metric,
                             "condition": condition, "baseline": baseline, "value": m["run_value"],
                             "baseline_value": m["baseline_value"], "delta": m["value"], "ci_low": m["ci_low"],
                             "ci_high": m["ci_high"], "n": m["n"], "interval": m["interval"],
                             "p_value": m["p_value"]})
    return with_holm(pd.DataFrame(rows, columns=COMPARISON_COLUMNS[:-1]))


#: the columns of a comparison table (:func:`scenario_comparisons`)
COMPARISON_COLUMNS = ["model", "task", "metric", "condition", "baseline", "value", "baseline_value", "delta",
                      "ci_low", "ci_high", "n", "interval", "p_value", "p_holm"]


def with_holm(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` with ``p_holm``: its ``p_value`` column adjusted for multiplicity as one family (Holm)."""
    out = comparisons.copy()
    out["p_holm"] = holm(out["p_value"].to_numpy()) if len(out) else []
    return out
