"""labscale.summary_analysis on small SummaryScores built by hand: every expected value is computed here
independently (by hand, numpy.polyfit, statsmodels, scipy) from the same numbers."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from labscale.errors import InvalidParameter
from labscale.metrics import corpus_bleu, corpus_bleu_rows
from labscale.summary_analysis import (
    bleu_length_breakdown,
    example_items,
    length_controlled_comparisons,
    length_controlled_difference,
    length_sensitivity,
    log2_length_ratio,
    metric_agreement,
    side_by_side,
    winner_flips,
)
from labscale.summary_scores import SummaryScores

matplotlib.use("Agg")

N = 200  # resamples: enough for the intervals' shape, fast


def make_scores(labels, bleu_stats, **per_item) -> SummaryScores:
    """SummaryScores of ``labels`` with ``bleu_stats`` ``(runs, items, 10)``, per-item scores zero unless given."""
    bleu_stats = np.asarray(bleu_stats, dtype=np.int64)
    runs, items = bleu_stats.shape[:2]
    names = ("rouge1", "rouge2", "rougeL", "bertscore_f1", "invalid")
    scores = {m: np.asarray(per_item.get(m, np.zeros((runs, items))), dtype=float) for m in names}
    return SummaryScores(
        runs=pd.DataFrame({"label": labels, "model": [label.split()[0] for label in labels], "group": "main"}),
        ids=tuple(f"item-{i}" for i in range(items)),
        scores=scores,
        bleu_stats=bleu_stats,
        summaries=tuple(tuple(f"{label} summary {i}" for i in range(items)) for label in labels),
        references=tuple(f"reference {i}" for i in range(items)),
    )


def random_stats(rng, runs, items):
    """Plausible BLEU statistics: lengths, n-gram totals from them, matches below the totals."""
    hyp = rng.integers(5, 60, size=(runs, items))
    ref = rng.integers(10, 50, size=(runs, items))
    ref[:] = ref[0]  # one reference per item
    totals = np.stack([np.maximum(hyp - n, 0) for n in range(4)], axis=-1)
    matches = (totals * rng.uniform(0.05, 0.6, size=(runs, items, 1))).astype(np.int64)
    return np.concatenate([hyp[..., None], ref[..., None], matches, totals], axis=-1)


# -- 1 -----------------------------------------------------------------------------------------------------------
def test_bleu_length_breakdown_by_hand():
    # run "short": 2 items, summed: hyp 5, ref 10, matches 4 3 2 1 of 5 4 3 2; run "long": hyp 12 > ref 10
    short = [[3, 6, 2, 2, 1, 1, 3, 2, 1, 1], [2, 4, 2, 1, 1, 0, 2, 2, 2, 1]]
    long = [[6, 6, 3, 2, 1, 1, 6, 5, 4, 3], [6, 4, 3, 2, 1, 1, 6, 5, 4, 3]]
    scores = make_scores(["short 0-shot", "long 0-shot"], [short, long])
    out = bleu_length_breakdown(scores).set_index("label")
    geo = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    bp = math.exp(1 - 10 / 5)
    assert out.loc["short 0-shot", "brevity_penalty"] == pytest.approx(bp)
    assert out.loc["short 0-shot", "bleu_without_penalty"] == pytest.approx(geo)
    assert out.loc["short 0-shot", "bleu"] == pytest.approx(bp * geo)
    assert out.loc["short 0-shot", "removed"] == pytest.approx(geo - bp * geo)
    assert out.loc["short 0-shot", "length_ratio"] == pytest.approx(0.5)
    geo_long = (6 / 12 * 4 / 10 * 2 / 8 * 2 / 6) ** 0.25
    assert out.loc["long 0-shot", "brevity_penalty"] == 1.0
    assert out.loc["long 0-shot", "bleu"] == pytest.approx(geo_long)
    assert out.loc["long 0-shot", "length_ratio"] == pytest.approx(1.2)


# -- 2 -----------------------------------------------------------------------------------------------------------
def test_length_sensitivity_recovers_an_exact_within_run_slope():
    rng = np.random.default_rng(1)
    stats = random_stats(rng, 3, 30)
    x = np.log2((stats[..., 0] + 1) / (stats[..., 1] + 1))
    exact = np.array([[0.2], [0.5], [0.35]]) + 0.1 * x  # run intercepts differ, one slope
    scores = make_scores(["a 0-shot", "b 0-shot", "c 0-shot"], stats, rouge1=exact)
    row = length_sensitivity(scores, ["rouge1"], n_resamples=N).iloc[0]
    assert row["slope"] == pytest.approx(0.1, abs=1e-12)
    assert row["ci_low"] == pytest.approx(0.1, abs=1e-9) and row["ci_high"] == pytest.approx(0.1, abs=1e-9)
    assert (row["n"], row["runs"]) == (30, 3)


def test_length_sensitivity_equals_ols_with_run_dummies():
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(2)
    stats = random_stats(rng, 4, 40)
    x = log2_length_ratio(stats)
    noisy = np.array([[0.1], [0.3], [0.2], [0.4]]) + 0.08 * x + rng.normal(0, 0.05, size=x.shape)
    scores = make_scores([f"m{r} 0-shot" for r in range(4)], stats, rougeL=noisy, bertscore_f1=noisy * 0.5)
    out = length_sensitivity(scores, ["rougeL", "bertscore_f1"], n_resamples=N).set_index("metric")
    frame = pd.DataFrame({"y": noisy.ravel(), "x": x.ravel(), "run": np.repeat(np.arange(4), 40)})
    expected = smf.ols("y ~ x + C(run)", data=frame).fit().params["x"]
    assert out.loc["rougeL", "slope"] == pytest.approx(expected, rel=1e-10)
    assert out.loc["bertscore_f1", "slope"] == pytest.approx(expected / 2, rel=1e-10)
    row = out.loc["rougeL"]
    assert row["interval"] == "bca" and row["ci_low"] < row["slope"] < row["ci_high"]
    # only the chosen runs enter
    two = length_sensitivity(scores, ["rougeL"], labels=["m0 0-shot", "m2 0-shot"], n_resamples=N).iloc[0]
    sub = frame[frame["run"].isin([0, 2])]
    assert two["slope"] == pytest.approx(smf.ols("y ~ x + C(run)", data=sub).fit().params["x"], rel=1e-10)
    assert two["runs"] == 2


# -- 3 -----------------------------------------------------------------------------------------------------------
def test_length_controlled_difference_is_the_ols_intercept():
    rng = np.random.default_rng(3)
    stats = random_stats(rng, 2, 50)
    s = rng.uniform(0.1, 0.6, size=(2, 50))
    scores = make_scores(["cond 0-shot", "base 0-shot"], stats, rougeL=s)
    out = length_controlled_difference(scores, "cond 0-shot", "base 0-shot", "rougeL", n_resamples=N)
    d = s[0] - s[1]
    x = np.log2((stats[0, :, 0] + 1) / (stats[1, :, 0] + 1))  # same reference: the log ratio of the two lengths
    slope, intercept = np.polyfit(x, d, 1)
    assert out["value"] == pytest.approx(intercept, abs=1e-12)
    assert out["slope"] == pytest.approx(slope, abs=1e-12)
    assert out["raw_delta"] == pytest.approx(d.mean())
    assert out["n"] == 50 and out["ci_low"] < out["value"] < out["ci_high"]
    assert (out["condition"], out["baseline"], out["metric"]) == ("cond 0-shot", "base 0-shot", "rougeL")


def test_length_control_can_reverse_a_conclusion():
    # the condition writes half-length summaries and loses 0.1 per halving; at equal length it is 0.03 better
    rng = np.random.default_rng(4)
    items = 80
    ref = rng.integers(20, 40, size=items)
    base_len = ref + rng.integers(-3, 4, size=items)
    cond_len = (base_len * rng.uniform(0.35, 0.7, size=items)).astype(int)
    stats = np.zeros((2, items, 10), dtype=np.int64)
    stats[0, :, 0], stats[1, :, 0], stats[:, :, 1] = cond_len, base_len, ref
    x = np.log2((cond_len + 1) / (base_len + 1))
    base = rng.uniform(0.3, 0.5, size=items)
    cond = base + 0.03 + 0.1 * x + rng.normal(0, 0.01, size=items)
    scores = make_scores(["ft fine-tuned", "ft 3-shot"], stats, rougeL=np.stack([cond, base]))
    out = length_controlled_comparisons(scores, [("ft", "ft fine-tuned", "ft 3-shot")], ["rougeL"], n_resamples=N)
    row = out.iloc[0]
    slope, intercept = np.polyfit(x, cond - base, 1)
    assert row["adjusted_delta"] == pytest.approx(intercept) and row["slope"] == pytest.approx(slope)
    assert row["raw_delta"] == pytest.approx(np.mean(cond - base)) and row["raw_delta"] < 0
    assert row["raw_high"] < 0 and row["ci_low"] > 0
    assert (row["raw_verdict"], row["adjusted_verdict"]) == ("baseline better", "condition better")
    assert bool(row["conclusion_changes"])
    assert list(out.columns[:4]) == ["family", "condition", "baseline", "metric"]


def test_length_control_refuses_bleu_and_unknown_runs():
    scores = make_scores(["a 0-shot", "b 0-shot"], random_stats(np.random.default_rng(0), 2, 5))
    with pytest.raises(InvalidParameter, match=r"unknown metric 'bleu'.*'rougeL'"):
        length_controlled_difference(scores, "a 0-shot", "b 0-shot", "bleu")
    with pytest.raises(InvalidParameter, match=r"unknown run 'c 0-shot'.*'a 0-shot'"):
        length_controlled_comparisons(scores, [("x", "c 0-shot", "a 0-shot")])


# -- 4 -----------------------------------------------------------------------------------------------------------
def test_corpus_bleu_rows_matches_sacrebleu_including_smoothed_rows():
    rng = np.random.default_rng(5)
    totals = random_stats(rng, 6, 3).sum(axis=1)
    totals[4, 5] = 0  # no 4-gram match: sacrebleu's exp smoothing
    totals[5, 2:6] = 0  # no match at all
    expected = [corpus_bleu(row[None]) for row in totals]
    assert corpus_bleu_rows(totals) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_metric_agreement_equals_scipy_on_run_values():
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(6)
    runs, items = 6, 25
    stats = random_stats(rng, runs, items)
    level = rng.uniform(0.1, 0.5, size=(runs, 1))
    rouge = level + rng.normal(0, 0.1, size=(runs, items))
    bert = 0.5 + level[::-1] + rng.normal(0, 0.1, size=(runs, items))
    labels = [f"m{r} 0-shot" for r in range(runs)]
    scores = make_scores(labels, stats, rougeL=rouge, bertscore_f1=bert)
    out = metric_agreement(scores, n_resamples=N)
    assert list(zip(out["metric_a"], out["metric_b"], strict=True)) == [
        ("bleu", "rougeL"),
        ("bleu", "bertscore_f1"),
        ("rougeL", "bertscore_f1"),
    ]
    bleu = [corpus_bleu(stats[r]) for r in range(runs)]
    values = {"bleu": bleu, "rougeL": rouge.mean(axis=1), "bertscore_f1": bert.mean(axis=1)}
    for _, row in out.iterrows():
        a, b = values[row["metric_a"]], values[row["metric_b"]]
        assert row["kendall_tau"] == pytest.approx(kendalltau(a, b).statistic)
        assert row["spearman_rho"] == pytest.approx(spearmanr(a, b).statistic)
        assert row["tau_low"] <= row["kendall_tau"] <= row["tau_high"]
        assert row["rho_low"] <= row["spearman_rho"] <= row["rho_high"]
        assert (row["runs"], row["n"]) == (runs, items)


def test_metric_agreement_refusals():
    scores = make_scores(["a 0-shot", "b 0-shot", "c 0-shot"], random_stats(np.random.default_rng(0), 3, 5))
    with pytest.raises(InvalidParameter, match=r"unknown metric 'meteor'.*'bleu'"):
        metric_agreement(scores, ["bleu", "meteor"])
    with pytest.raises(InvalidParameter, match="at least two metrics"):
        metric_agreement(scores, ["bleu"])
    with pytest.raises(InvalidParameter, match="at least 3 runs"):
        metric_agreement(scores, labels=["a 0-shot", "b 0-shot"])


# -- 5 -----------------------------------------------------------------------------------------------------------
def test_winner_flips_on_a_hand_made_frame():
    rows = [
        # pair 1: BLEU says baseline, BERTScore says condition -> flip
        ("gpt", "ft", "3s", "bleu", -0.05, 0.001),
        ("gpt", "ft", "3s", "bertscore_f1", 0.02, 0.01),
        # pair 2: all agree the condition is better
        ("gpt", "1s", "0s", "bleu", 0.01, 0.02),
        ("gpt", "1s", "0s", "bertscore_f1", 0.03, 0.0),
        # pair 3: one clear, one not: disagrees, no flip; a large p does not count
        ("llama", "ft", "3s", "bleu", 0.04, 0.2),
        ("llama", "ft", "3s", "bertscore_f1", -0.01, 0.049),
    ]
    frame = pd.DataFrame(rows, columns=["family", "condition", "baseline", "metric", "delta", "p_holm"])
    out = winner_flips(frame)
    assert list(out.columns) == ["family", "condition", "baseline", "bleu", "bertscore_f1", "flips", "disagrees"]
    assert out[["family", "condition"]].values.tolist() == [["gpt", "ft"], ["gpt", "1s"], ["llama", "ft"]]
    assert out["bleu"].tolist() == ["baseline better", "condition better", "no clear difference"]
    assert out["bertscore_f1"].tolist() == ["condition better", "condition better", "baseline better"]
    assert out["flips"].tolist() == [True, False, False]
    assert out["disagrees"].tolist() == [True, False, True]


# -- 6 -----------------------------------------------------------------------------------------------------------
def test_example_items_follow_their_rules():
    rouge = np.array(
        [
            [0.5, 0.1, 0.4, 0.3, 0.9],
            [0.5, 0.8, 0.1, 0.0, 0.9],
            [0.5, 0.4, 0.8, 0.2, 0.9],
        ]
    )
    # ranges: 0, 0.7, 0.7, 0.3, 0 -> items 1 and 2 (tie broken by order); means: 0.5, 0.433, 0.433, 0.167, 0.9
    scores = make_scores(["a 0-shot", "b 0-shot", "c 0-shot"], np.ones((3, 5, 10)), rougeL=rouge)
    assert example_items(scores, k=2) == ["item-1", "item-2"]
    assert example_items(scores, k=1) == ["item-1"]
    assert example_items(scores, rule="lowest", k=3) == ["item-3", "item-1", "item-2"]
    # only the chosen runs: a and c disagree most on item 2 (0.4), then item 1 (0.3)
    assert example_items(scores, labels=["a 0-shot", "c 0-shot"], k=2) == ["item-2", "item-1"]


def test_example_items_refusals_name_the_bad_value():
    scores = make_scores(["a 0-shot", "b 0-shot"], np.ones((2, 3, 10)))
    with pytest.raises(InvalidParameter, match=r"unknown rule 'median'; valid choices: 'disagreement', 'lowest'"):
        example_items(scores, rule="median")
    with pytest.raises(InvalidParameter, match=r"unknown metric 'bleu'.*'rouge1'"):
        example_items(scores, metric="bleu")
    with pytest.raises(InvalidParameter, match=r"unknown run 'z 0-shot'.*'a 0-shot', 'b 0-shot'"):
        example_items(scores, labels=["z 0-shot"])
    with pytest.raises(InvalidParameter, match=r"k=0 is out of range"):
        example_items(scores, k=0)


def test_side_by_side_rows():
    rouge = np.array([[0.1, 0.2], [0.3, 0.4]])
    scores = make_scores(["a 0-shot", "b 0-shot"], np.ones((2, 2, 10)), rougeL=rouge)
    out = side_by_side(scores, "item-1")
    assert out["run"].tolist() == ["reference", "a 0-shot", "b 0-shot"]
    assert out["text"].tolist() == ["reference 1", "a 0-shot summary 1", "b 0-shot summary 1"]
    assert np.isnan(out["rougeL"].iloc[0]) and out["rougeL"].iloc[1:].tolist() == [0.2, 0.4]
    assert side_by_side(scores, "item-0", labels=["b 0-shot"], metric="rougeL")["run"].tolist() == [
        "reference",
        "b 0-shot",
    ]
    with pytest.raises(InvalidParameter, match=r"unknown item 'item-9'.*'item-0'"):
        side_by_side(scores, "item-9")


# -- 7 -----------------------------------------------------------------------------------------------------------
def test_plots_put_one_labelled_point_per_run():
    import matplotlib.pyplot as plt

    from labscale import plots

    rng = np.random.default_rng(7)
    labels = ["mistral-7b-instruct 3-shot", "gpt-3.5-turbo fine-tuned", "llama-2-7b-chat + cross-task adapter 2-shot"]
    scores = make_scores(labels, random_stats(rng, 3, 10), rougeL=rng.uniform(size=(3, 10)))
    for fig in (plots.length_plot(scores), plots.agreement_plot(scores, "bleu", "rougeL")):
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert texts == ["mistral-7b 3s", "gpt-3.5 FT", "llama-2-7b+X 2s"]
        assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 3
        plt.close(fig)
    with pytest.raises(InvalidParameter, match="unknown metric 'meteor'"):
        plots.agreement_plot(scores, y="meteor")
