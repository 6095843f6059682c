"""Why the summarization metrics disagree: length, and how much of each metric it explains.

Everything here is computed from the stored per-item scores of :class:`~labscale.summary_scores.SummaryScores`
(no rescoring). Every interval is the BCa bootstrap of :func:`labscale.metrics._bootstrap` over items: a resample
draws items, and every run's values of a drawn item go together.

The length of a summary is measured against its reference by ``log2((hyp + 1) / (ref + 1))`` (13a tokens, the
BLEU statistics' columns 0 and 1; +1 keeps empty summaries finite): 0 is "as long as the reference", -1 "half as
long". Invalid (empty) summaries are kept, scored as they were stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import InvalidParameter, check_choice, check_range
from .metrics import ROUGE_TYPES, _bootstrap, _mean, corpus_bleu_rows, hf_bleu, length_ratio
from .metrics import metric as metric_dict
from .summary_scores import SUMMARY_METRICS, SummaryScores, statistic

#: metrics with one score per item (everything but corpus BLEU)
ITEM_METRICS = (*ROUGE_TYPES, "bertscore_f1")

#: verdicts of a paired comparison, from its p-value or its interval
CONDITION_BETTER, BASELINE_BETTER, NO_CLEAR_DIFFERENCE = "condition better", "baseline better", "no clear difference"

#: the rules :func:`example_items` may pick items by
EXAMPLE_RULES = ("disagreement", "lowest")


# -- helpers ------------------------------------------------------------------------------------------------------
def _labels(scores: SummaryScores, labels: Sequence[str] | None) -> list[str]:
    """``labels`` (default: every run), each checked against the runs."""
    chosen = scores.labels if labels is None else list(labels)
    if not chosen:
        raise InvalidParameter(f"no runs chosen; valid runs: {', '.join(map(repr, scores.labels))}")
    for label in chosen:
        scores.index(label)
    return chosen


def _rows(scores: SummaryScores, labels: Sequence[str]) -> list[int]:
    return [scores.index(label) for label in labels]


def _metrics(metrics: Sequence[str] | str, valid: Sequence[str]) -> list[str]:
    chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    if not chosen:
        raise InvalidParameter(f"no metrics chosen; valid metrics: {', '.join(map(repr, valid))}")
    for name in chosen:
        check_choice("metric", name, valid)
    return chosen


def log2_length_ratio(stats: np.ndarray) -> np.ndarray:
    """``log2((hyp + 1) / (ref + 1))`` of BLEU statistics rows ``(..., 10)``: each summary's length against its
    reference, in doublings."""
    stats = np.asarray(stats, dtype=float)
    return np.log2((stats[..., 0] + 1) / (stats[..., 1] + 1))


def verdict(delta: float, p_value: float, alpha: float = 0.05) -> str:
    """A comparison's verdict: the condition or the baseline better when ``p_value < alpha``, by the sign of
    ``delta``; otherwise no clear difference."""
    if p_value < alpha and delta != 0:
        return CONDITION_BETTER if delta > 0 else BASELINE_BETTER
    return NO_CLEAR_DIFFERENCE


def _interval_verdict(low: float, high: float) -> str:
    """The verdict of a 95 % interval of a difference: its sign where it excludes 0."""
    return CONDITION_BETTER if low > 0 else BASELINE_BETTER if high < 0 else NO_CLEAR_DIFFERENCE


def _run_values(metric_name: str, values: np.ndarray) -> np.ndarray:
    """Every run's value of ``metric_name`` from per-item values ``(items, runs)`` (``(items, runs, 10)`` for BLEU)."""
    return corpus_bleu_rows(values.sum(axis=0)) if metric_name == "bleu" else values.mean(axis=0)


def _item_values(scores: SummaryScores, metric_name: str, rows: list[int]) -> np.ndarray:
    """Per-item values with items first: ``(items, runs)``, or ``(items, runs, 10)`` for BLEU."""
    if metric_name == "bleu":
        return np.swapaxes(scores.bleu_stats[rows], 0, 1)
    return scores.scores[metric_name][rows].T


# -- 1. BLEU and the brevity penalty --------------------------------------------------------------------------
def bleu_length_breakdown(scores: SummaryScores, *, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """How much of each run's corpus BLEU the brevity penalty removes.

    One row per run: ``bleu`` (corpus BLEU, as everywhere else), ``brevity_penalty``, ``bleu_without_penalty``
    (the geometric mean of the four n-gram precisions, i.e. ``bleu / brevity_penalty``), ``removed`` (their
    difference) and the corpus ``length_ratio`` (summary over reference tokens), all from
    :func:`~labscale.metrics.hf_bleu` of the run's summed statistics."""
    rows = []
    for label in _labels(scores, labels):
        stats = scores.item_values("bleu", label)
        parts = hf_bleu(stats)
        bleu = float(statistic("bleu")(stats))
        precisions = np.asarray(parts["precisions"])
        geo_mean = float(np.exp(np.log(precisions).mean())) if precisions.min() > 0 else 0.0
        rows.append(
            {
                "label": label,
                "bleu": bleu,
                "brevity_penalty": parts["brevity_penalty"],
                "bleu_without_penalty": geo_mean,
                "removed": geo_mean - bleu,
                "length_ratio": length_ratio(stats),
            }
        )
    return pd.DataFrame(rows)


# -- 2. how scores move with length, within runs ---------------------------------------------------------------
def _within_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Pooled OLS slope of ``y`` on ``x`` (both ``(items, runs)``) after demeaning each run's column: the slope with
    run fixed effects."""
    xd, yd = x - x.mean(axis=0), y - y.mean(axis=0)
    sxx = float((xd * xd).sum())
    return float((xd * yd).sum() / sxx) if sxx > 0 else 0.0


def length_sensitivity(
    scores: SummaryScores,
    metrics: Sequence[str] = ITEM_METRICS,
    *,
    labels: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """How much a per-item score changes per doubling of the summary's length ratio, within runs.

    For each metric: the OLS slope of the per-item score on :func:`log2_length_ratio` with run fixed effects
    (score and length demeaned within each run, then one pooled slope), so differences between runs' average
    lengths and average quality do not enter. BCa interval over items. Columns: metric, slope, ci_low, ci_high,
    n (items), runs, interval."""
    chosen = _metrics(metrics, ITEM_METRICS)
    runs = _labels(scores, labels)
    check_range("n_resamples", n_resamples, 1, None, integer=True)
    rows = _rows(scores, runs)
    x = log2_length_ratio(scores.bleu_stats[rows]).T
    if float(((x - x.mean(axis=0)) ** 2).sum()) == 0:
        raise InvalidParameter("summary lengths do not vary within any run; no slope to estimate")
    out = []
    for name in chosen:
        y = _item_values(scores, name, rows)
        value, low, high, method = _bootstrap(_within_slope, x, y, n_resamples=n_resamples, seed=seed)
        out.append(
            {
                "metric": name,
                "slope": value,
                "ci_low": low,
                "ci_high": high,
                "n": len(scores.ids),
                "runs": len(runs),
                "interval": method,
            }
        )
    return pd.DataFrame(out)


# -- 3. paired differences at equal length -----------------------------------------------------------------------
def _ols(x: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """``(intercept, slope)`` of the OLS line of ``d`` on ``x``; with no spread in ``x``, ``(mean(d), 0)``."""
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ (d - d.mean()) / sxx) if sxx > 0 else 0.0
    return float(d.mean() - slope * x.mean()), slope


def length_controlled_difference(
    scores: SummaryScores, condition: str, baseline: str, metric: str, *, n_resamples: int = 1000, seed: int = 0
) -> dict:
    """The paired difference ``condition - baseline`` of a per-item metric at equal summary length.

    With ``d_i`` the per-item difference of scores and ``x_i`` the difference of the two summaries'
    :func:`log2_length_ratio` (the log2 ratio of their lengths), the value is the intercept of the OLS line of
    ``d`` on ``x``: the expected difference where the two summaries are equally long (an extrapolation when one
    run is always shorter). BCa interval over items. A :func:`~labscale.metrics.metric` dict with ``raw_delta``
    (the plain mean difference) and ``slope`` (change of ``d`` per doubling of the relative length)."""
    check_choice("metric", metric, ITEM_METRICS)
    first, second = scores.index(condition), scores.index(baseline)
    check_range("n_resamples", n_resamples, 1, None, integer=True)
    d = scores.scores[metric][first] - scores.scores[metric][second]
    x = log2_length_ratio(scores.bleu_stats[first]) - log2_length_ratio(scores.bleu_stats[second])
    value, low, high, method = _bootstrap(lambda xs, ds: _ols(xs, ds)[0], x, d, n_resamples=n_resamples, seed=seed)
    return metric_dict(
        value,
        low,
        high,
        len(d),
        interval=method,
        raw_delta=float(d.mean()),
        slope=_ols(x, d)[1],
        condition=condition,
        baseline=baseline,
        metric=metric,
    )


def length_controlled_comparisons(
    scores: SummaryScores,
    pairs: Sequence[tuple[str, str, str]],
    metrics: Sequence[str] = ("rougeL", "bertscore_f1"),
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Raw and length-controlled paired differences for ``pairs`` of ``(family, condition, baseline)`` labels.

    Per pair and metric: ``raw_delta`` with its BCa interval (``raw_low``, ``raw_high``), ``adjusted_delta``
    (:func:`length_controlled_difference`) with its BCa interval (``ci_low``, ``ci_high``), ``slope``, ``n``,
    ``interval`` (the adjusted interval's method), and the verdict of each interval (``raw_verdict``,
    ``adjusted_verdict``: the sign of the difference where its 95 % interval excludes 0, else "no clear
    difference"; not adjusted for multiplicity). ``conclusion_changes`` is True when the two verdicts differ."""
    chosen = _metrics(metrics, ITEM_METRICS)
    for _, condition, baseline in pairs:
        scores.index(condition), scores.index(baseline)
    rows = []
    for family, condition, baseline in pairs:
        for name in chosen:
            adjusted = length_controlled_difference(
                scores, condition, baseline, name, n_resamples=n_resamples, seed=seed
            )
            d = scores.item_values(name, condition) - scores.item_values(name, baseline)
            _, raw_low, raw_high, _ = _bootstrap(_mean, d, n_resamples=n_resamples, seed=seed)
            raw_verdict = _interval_verdict(raw_low, raw_high)
            adjusted_verdict = _interval_verdict(adjusted["ci_low"], adjusted["ci_high"])
            rows.append(
                {
                    "family": family,
                    "condition": condition,
                    "baseline": baseline,
                    "metric": name,
                    "raw_delta": adjusted["raw_delta"],
                    "raw_low": raw_low,
                    "raw_high": raw_high,
                    "adjusted_delta": adjusted["value"],
                    "ci_low": adjusted["ci_low"],
                    "ci_high": adjusted["ci_high"],
                    "slope": adjusted["slope"],
                    "n": adjusted["n"],
                    "interval": adjusted["interval"],
                    "raw_verdict": raw_verdict,
                    "adjusted_verdict": adjusted_verdict,
                    "conclusion_changes": raw_verdict != adjusted_verdict,
                }
            )
    return pd.DataFrame(rows)


# -- 4. do the metrics rank the runs alike? ----------------------------------------------------------------------
def metric_agreement(
    scores: SummaryScores,
    metrics: Sequence[str] = ("bleu", "rougeL", "bertscore_f1"),
    *,
    labels: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Rank agreement of the runs under every pair of ``metrics``.

    Run-level values are corpus BLEU for ``bleu`` and means otherwise (:func:`~labscale.summary_scores.statistic`);
    Kendall's tau-b and Spearman's rho (``scipy.stats``) between two metrics' values across runs, each with a BCa
    interval from resampling items (every run's value recomputed on the drawn items, then the correlation).
    Columns: metric_a, metric_b, kendall_tau, tau_low, tau_high, spearman_rho, rho_low, rho_high, runs, n,
    interval (one method name, or ``kendall: ...; spearman: ...`` when the two differ)."""
    from scipy.stats import kendalltau, spearmanr

    chosen = _metrics(metrics, SUMMARY_METRICS)
    if len(chosen) < 2:
        raise InvalidParameter(f"metric agreement needs at least two metrics, got {chosen}")
    runs = _labels(scores, labels)
    if len(runs) < 3:
        raise InvalidParameter(f"rank agreement needs at least 3 runs, got {len(runs)}")
    check_range("n_resamples", n_resamples, 1, None, integer=True)
    rows = _rows(scores, runs)
    values = {name: _item_values(scores, name, rows) for name in chosen}
    # every bootstrap below draws the same items (same seed): each draw's run values are computed once
    cache: dict[bytes, dict[str, np.ndarray]] = {}

    def run_values(items: np.ndarray) -> dict[str, np.ndarray]:
        key = items.tobytes()
        if key not in cache:
            cache[key] = {name: _run_values(name, v[items]) for name, v in values.items()}
        return cache[key]

    items = np.arange(len(scores.ids))
    out = []
    for i, a in enumerate(chosen):
        for b in chosen[i + 1 :]:

            def tau(drawn: np.ndarray, a: str = a, b: str = b) -> float:
                v = run_values(drawn)
                return float(kendalltau(v[a], v[b], method="asymptotic").statistic)

            def rho(drawn: np.ndarray, a: str = a, b: str = b) -> float:
                v = run_values(drawn)
                return float(spearmanr(v[a], v[b]).statistic)

            t, t_low, t_high, t_method = _bootstrap(tau, items, n_resamples=n_resamples, seed=seed)
            r, r_low, r_high, r_method = _bootstrap(rho, items, n_resamples=n_resamples, seed=seed)
            out.append(
                {
                    "metric_a": a,
                    "metric_b": b,
                    "kendall_tau": t,
                    "tau_low": t_low,
                    "tau_high": t_high,
                    "spearman_rho": r,
                    "rho_low": r_low,
                    "rho_high": r_high,
                    "runs": len(runs),
                    "n": len(scores.ids),
                    "interval": t_method if t_method == r_method else f"kendall: {t_method}; spearman: {r_method}",
                }
            )
    return pd.DataFrame(out)


# -- 5. winners by metric ----------------------------------------------------------------------------------------
def winner_flips(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per ``(family, condition, baseline)`` of a :func:`~labscale.summary_scores.paired_runs` frame, the verdict
    of each metric (:func:`verdict` of ``delta`` and ``p_holm`` at 0.05), one column per metric (in the frame's
    order), plus ``flips`` (one metric says the condition is better, another the baseline) and ``disagrees``
    (the verdicts are not all the same). Pairs keep the input order."""
    keys = ["family", "condition", "baseline"]
    for column in (*keys, "metric", "delta", "p_holm"):
        if column not in comparisons:
            raise InvalidParameter(f"the comparisons lack column {column!r}; columns: {list(comparisons.columns)}")
    metric_names = list(dict.fromkeys(comparisons["metric"]))
    rows = []
    for key, group in comparisons.groupby(keys, sort=False):
        verdicts = {
            m: verdict(delta, p)
            for m, delta, p in zip(group["metric"], group["delta"], group["p_holm"].fillna(1.0), strict=True)
        }
        said = set(verdicts.values())
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                **{m: verdicts.get(m) for m in metric_names},
                "flips": {CONDITION_BETTER, BASELINE_BETTER} <= said,
                "disagrees": len(said) > 1,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, *metric_names, "flips", "disagrees"])


# -- 6. example items, picked by a rule ----------------------------------------------------------------------------
def example_items(
    scores: SummaryScores,
    *,
    labels: Sequence[str] | None = None,
    metric: str = "rougeL",
    rule: str = "disagreement",
    k: int = 2,
) -> list[str]:
    """``k`` item ids picked by a stated rule over the runs ``labels`` (default: all): ``"disagreement"``, the
    largest range (max - min) of the per-item ``metric`` across the runs; ``"lowest"``, the lowest mean of it.
    Ties go to the earlier item."""
    check_choice("rule", rule, EXAMPLE_RULES)
    check_choice("metric", metric, ITEM_METRICS)
    check_range("k", k, 1, len(scores.ids), integer=True)
    values = scores.scores[metric][_rows(scores, _labels(scores, labels))]
    key = -(values.max(axis=0) - values.min(axis=0)) if rule == "disagreement" else values.mean(axis=0)
    return [scores.ids[i] for i in np.argsort(key, kind="stable")[:k]]


def side_by_side(
    scores: SummaryScores, item_id: str, *, labels: Sequence[str] | None = None, metric: str = "rougeL"
) -> pd.DataFrame:
    """One item's reference and each run's summary, with the run's per-item ``metric``: rows "reference" then the
    runs; columns run, text and ``metric`` (NaN for the reference)."""
    check_choice("metric", metric, ITEM_METRICS)
    runs = _labels(scores, labels)
    if item_id not in scores.ids:
        shown = ", ".join(map(repr, scores.ids[:5]))
        raise InvalidParameter(f"unknown item {item_id!r}; valid: the {len(scores.ids)} item ids, e.g. {shown}")
    col = scores.ids.index(item_id)
    rows = [{"run": "reference", "text": scores.references[col], metric: np.nan}]
    for label, row in zip(runs, _rows(scores, runs), strict=True):
        rows.append({"run": label, "text": scores.summaries[row][col], metric: float(scores.scores[metric][row, col])})
    return pd.DataFrame(rows)


__all__ = [
    "BASELINE_BETTER",
    "CONDITION_BETTER",
    "EXAMPLE_RULES",
    "ITEM_METRICS",
    "NO_CLEAR_DIFFERENCE",
    "bleu_length_breakdown",
    "example_items",
    "length_controlled_comparisons",
    "length_controlled_difference",
    "length_sensitivity",
    "log2_length_ratio",
    "metric_agreement",
    "side_by_side",
    "verdict",
    "winner_flips",
]
