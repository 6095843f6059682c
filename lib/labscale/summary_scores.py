"""Per-item scores of several summarization runs on the same items, read from their run records.

A summarization record stores, for every item, the scores of :data:`labscale.metrics.SUMMARY_ITEM_SCORES` (ROUGE
F-measures, BERTScore F1, BLEU sufficient statistics, the invalid flag). :func:`read_summary_scores` lines several
records up on the items they share, so that any subset, resample or pairing of runs is computed from stored
numbers, without rescoring: corpus BLEU of a subset is :func:`~labscale.metrics.corpus_bleu` of its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import records
from .errors import InvalidParameter, check_choice
from .metrics import ROUGE_TYPES, _mean, corpus_bleu, length_ratio

#: permutations per comparison in a family of paired tests: a random permutation test's p-value is at least
#: 1 / (permutations + 1), and Holm multiplies the smallest by the family size, so 200 per comparison keeps that
#: floor at 1/200 of the family's adjusted threshold
PERMUTATIONS_PER_COMPARISON = 200

#: the metrics a run of summaries is compared on: corpus BLEU, mean ROUGE F-measures and mean BERTScore F1
SUMMARY_METRICS = ("bleu", *ROUGE_TYPES, "bertscore_f1")


@dataclass(frozen=True)
class SummaryScores:
    """Per-item scores of ``len(runs)`` runs on the same ``ids`` (rows: runs, columns: items).

    ``runs`` is one row per run (``label``, ``model``, ``scenario``, ``shots``, ``experiment``, ``run`` and any
    ``settings`` the producer recorded, e.g. a released run's ``group`` and ``step``); ``scores`` maps each of
    ROUGE-1/2/L, ``bertscore_f1`` and ``invalid`` to an ``(runs, items)`` array; ``bleu_stats`` is
    ``(runs, items, 10)``; ``summaries`` and ``references`` are the texts scored."""

    runs: pd.DataFrame
    ids: tuple[str, ...]
    scores: dict[str, np.ndarray]
    bleu_stats: np.ndarray
    summaries: tuple[tuple[str, ...], ...]
    references: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return self.runs["label"].tolist()

    def index(self, label: str) -> int:
        """The row of the run called ``label``; the valid labels are named otherwise."""
        check_choice("run", label, self.labels)
        return self.labels.index(label)

    def item_values(self, metric: str, label: str) -> np.ndarray:
        """One run's per-item values of ``metric``: BLEU statistics rows for ``bleu``, else one score per item."""
        check_choice("metric", metric, [*SUMMARY_METRICS, "length_ratio", "invalid"])
        row = self.index(label)
        if metric in ("bleu", "length_ratio"):
            return self.bleu_stats[row]
        return self.scores[metric][row]

    def value(self, metric: str, label: str) -> float:
        """The run-level value of ``metric`` for run ``label`` on these items."""
        return float(statistic(metric)(self.item_values(metric, label)))

    def length_ratios(self) -> np.ndarray:
        """Per-item length ratio (summary over reference 13a tokens), ``(runs, items)``."""
        return self.bleu_stats[:, :, 0] / np.maximum(self.bleu_stats[:, :, 1], 1)

    def subset(self, ids: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> SummaryScores:
        """These scores on the items ``ids`` (in that order) and the runs ``labels`` (in that order)."""
        item_rows = list(range(len(self.ids)))
        if ids is not None:
            where = {item: k for k, item in enumerate(self.ids)}
            missing = [i for i in ids if i not in where]
            if missing:
                raise InvalidParameter(f"{len(missing)} item(s) are not in these runs, e.g. {missing[0]!r}")
            item_rows = [where[i] for i in ids]
        run_rows = list(range(len(self.runs))) if labels is None else [self.index(label) for label in labels]
        return replace(
            self,
            runs=self.runs.iloc[run_rows].reset_index(drop=True),
            ids=tuple(self.ids[k] for k in item_rows),
            scores={name: values[np.ix_(run_rows, item_rows)] for name, values in self.scores.items()},
            bleu_stats=self.bleu_stats[np.ix_(run_rows, item_rows)],
            summaries=tuple(tuple(self.summaries[r][k] for k in item_rows) for r in run_rows),
            references=tuple(self.references[k] for k in item_rows),
        )

    def table(self) -> pd.DataFrame:
        """One row per run: its labels and every metric of :data:`SUMMARY_METRICS` plus the length ratio and the
        invalid rate on these items (point values; intervals come from the run records or the comparisons)."""
        out = self.runs.copy()
        for metric in (*SUMMARY_METRICS, "length_ratio", "invalid"):
            out[metric] = [self.value(metric, label) for label in self.labels]
        return out.rename(columns={"invalid": "invalid_rate"})


def statistic(metric: str) -> Callable[[np.ndarray], float]:
    """How a run-level value is made from per-item values: corpus BLEU (or the corpus length ratio) from summed
    statistics rows, the mean otherwise."""
    return {"bleu": corpus_bleu, "length_ratio": length_ratio}.get(metric, _mean)


def run_label(params: dict) -> str:
    """A run's name in comparison tables: its model and scenario (``mistral-7b-instruct 3-shot``)."""
    return f"{params['model']} {params.get('scenario', str(params['shots']) + '-shot')}"


def read_summary_scores(runs: Iterable[str | Path], *, ids: Sequence[str] | None = None) -> SummaryScores:
    """Line up the per-item scores of summarization run records ``runs`` on ``ids`` (default: the first run's
    items in its order; every run must hold them all). Runs scored with different BERTScore encoders, runs of
    another task and records without stored per-item BLEU statistics are refused, naming the run."""
    paths = [Path(r) for r in runs]
    if not paths:
        raise InvalidParameter("read_summary_scores needs at least one run record")
    rows, per_run, encoders = [], [], set()
    for path in paths:
        record = records.read_run(path)
        params = record["params"]
        if params["task"] != "summarization":
            raise InvalidParameter(f"{str(path)!r} is a {params['task']!r} run, not a summarization run")
        predictions = record["predictions"]
        if "scores" not in predictions or "bleu_stats" not in (predictions["scores"].iloc[0] or {}):
            raise InvalidParameter(
                f"{str(path)!r} stores no per-item BLEU statistics (a record from older code); rerun it"
            )
        encoders.add(record["metrics"]["bertscore_f1"].get("encoder"))
        settings = params.get("released") or {}
        rows.append(
            {
                "label": run_label(params),
                "model": params["model"],
                "scenario": params.get("scenario"),
                "shots": params["shots"],
                "experiment": params.get("experiment"),
                "group": settings.get("group", "ours"),
                "step": settings.get("step"),
                "run": str(path),
            }
        )
        per_run.append(predictions.set_index("id"))
    if len(encoders) > 1:
        raise InvalidParameter(
            f"these runs scored BERTScore with different encoders ({sorted(map(str, encoders))}); "
            "compare runs of one encoder"
        )
    labels = [r["label"] for r in rows]
    if len(set(labels)) != len(labels):
        raise InvalidParameter(f"two runs share a label: {sorted({x for x in labels if labels.count(x) > 1})}")
    ids = list(per_run[0].index) if ids is None else list(ids)
    for path, frame in zip(paths, per_run, strict=True):
        missing = [i for i in ids if i not in frame.index]
        if missing:
            raise InvalidParameter(f"{str(path)!r} did not answer {len(missing)} of the items, e.g. {missing[0]!r}")
    aligned = [frame.loc[ids] for frame in per_run]
    names = (*ROUGE_TYPES, "bertscore_f1", "invalid")
    scores = {name: np.array([[s[name] for s in f["scores"]] for f in aligned], dtype=float) for name in names}
    bleu = np.array([[s["bleu_stats"] for s in f["scores"]] for f in aligned], dtype=np.int64)
    references = tuple(str(t) for t in aligned[0]["target"])
    summaries = tuple(
        tuple("" if bool(inv) else str(p) for p, inv in zip(f["parsed"], f["invalid"], strict=True)) for f in aligned
    )
    return SummaryScores(pd.DataFrame(rows), tuple(ids), scores, bleu, summaries, references)


def run_intervals(
    scores: SummaryScores, metrics: Sequence[str] = SUMMARY_METRICS, *, n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Every run's value of each of ``metrics`` on these items with its BCa 95 % interval (a tidy table like
    :func:`labscale.records.metrics_table`: model, scenario, metric, value, ci_low, ci_high, n, interval, label)."""
    from .metrics import _bootstrap

    for metric in metrics:
        check_choice("metric", metric, [*SUMMARY_METRICS, "length_ratio"])
    rows = []
    for _, run in scores.runs.iterrows():
        for metric in metrics:
            value, low, high, method = _bootstrap(
                statistic(metric), scores.item_values(metric, run["label"]), n_resamples=n_resamples, seed=seed
            )
            rows.append(
                {
                    "model": run["model"],
                    "task": "summarization",
                    "scenario": run["scenario"],
                    "shots": run["shots"],
                    "metric": metric,
                    "value": value,
                    "ci_low": low,
                    "ci_high": high,
                    "n": len(scores.ids),
                    "interval": method,
                    "label": run["label"],
                    "group": run["group"],
                    "run": run["run"],
                }
            )
    return pd.DataFrame(rows)


def paired_runs(
    scores: SummaryScores,
    pairs: Sequence[tuple[str, str, str]],
    metrics: Sequence[str] = SUMMARY_METRICS,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparisons of runs on the same items from their stored per-item scores.

    ``pairs`` are ``(family, condition, baseline)`` run labels; each pair is compared on every metric of
    ``metrics`` (:func:`labscale.metrics.paired_difference`: the condition's value minus the baseline's, a BCa
    interval over items resampled together, a paired permutation p-value). Holm's adjustment runs within each
    family, over all its pairs and metrics (``p_holm``). Each family's permutation tests draw
    :data:`PERMUTATIONS_PER_COMPARISON` times its number of comparisons (at least ``n_resamples``), so that the
    smallest p-value a random permutation test can give stays far below 0.05 after Holm's adjustment. Columns:
    :data:`labscale.compare.COMPARISON_COLUMNS` (``model`` holds the family), ``family`` and ``permutations``."""
    from .compare import comparison_row, with_holm
    from .metrics import paired_difference

    for metric in metrics:
        check_choice("metric", metric, SUMMARY_METRICS)
    for _, condition, baseline in pairs:
        scores.index(condition), scores.index(baseline)
    sizes = pd.Series([family for family, _, _ in pairs]).value_counts() * len(metrics)
    rows = []
    for family, condition, baseline in pairs:
        permutations = max(n_resamples, PERMUTATIONS_PER_COMPARISON * int(sizes[family]))
        for metric in metrics:
            first, second = scores.item_values(metric, condition), scores.item_values(metric, baseline)
            how = statistic(metric)
            result = paired_difference(
                how,
                first,
                second,
                n_resamples=n_resamples,
                seed=seed,
                n_permutations=permutations,
                run_value=float(how(first)),
                baseline_value=float(how(second)),
            )
            row = comparison_row(
                result, model=family, task="summarization", metric=metric, condition=condition, baseline=baseline
            )
            rows.append({**row, "family": family, "permutations": permutations})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return pd.concat([with_holm(group) for _, group in frame.groupby("family", sort=False)], ignore_index=True)


__all__ = [
    "SUMMARY_METRICS",
    "SummaryScores",
    "paired_runs",
    "run_intervals",
    "read_summary_scores",
    "run_label",
    "statistic",
]
