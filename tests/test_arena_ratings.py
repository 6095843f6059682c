"""Ratings from battles: online Elo against evalica, Bradley-Terry against choix, item-bootstrap coverage on
synthetic battles, win-rate matrices, calibration and the judge gate."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from labscale.arena.ratings import (
    BT_PENALTY,
    MIN_AGREEMENT,
    MIN_CONSISTENCY,
    bca_from_distributions,
    bradley_terry,
    bradley_terry_intervals,
    calibration,
    elo_order_bootstrap,
    judge_quality,
    online_elo,
    predicted_win_rates,
    probability_at_least_as_good,
    win_rates,
)
from labscale.errors import InvalidParameter

ELO_UNIT = 400 / np.log(10)  # Elo points per unit of natural log-strength


def table(rows, judge="gold", consistent=None) -> pd.DataFrame:
    """A battle table from (item, model_a, model_b, winner) rows."""
    out = pd.DataFrame(rows, columns=["item", "model_a", "model_b", "winner"])
    out["judge"], out["order"], out["seed"] = judge, "ab", 0
    if consistent is not None:
        out["consistent"] = consistent
    return out


def synthetic(true: dict[str, float], n_items: int, rng, ties: float = 0.0) -> pd.DataFrame:
    """One battle per pair of models per item, outcomes drawn from Bradley-Terry with ``true`` Elo-scale ratings
    (a share ``ties`` of battles tied), sides and row order shuffled."""
    pairs = list(itertools.combinations(true, 2))
    first = np.array([a for a, _ in pairs] * n_items)
    second = np.array([b for _, b in pairs] * n_items)
    lead = np.array([true[a] - true[b] for a, b in pairs] * n_items)
    first_wins = rng.random(len(lead)) < 1 / (1 + 10 ** (-lead / 400))
    winner = np.where(first_wins, "model_a", "model_b")
    winner[rng.random(len(lead)) < ties] = "tie"
    swap = rng.random(len(lead)) < 0.5
    flipped = {"model_a": "model_b", "model_b": "model_a", "tie": "tie"}
    out = table(
        {
            "item": np.repeat(np.arange(n_items), len(pairs)),
            "model_a": np.where(swap, second, first),
            "model_b": np.where(swap, first, second),
            "winner": [flipped[w] if s else w for w, s in zip(winner, swap, strict=True)],
        }
    )
    return out.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


TRUE = {"m0": 1150.0, "m1": 1060.0, "m2": 1000.0, "m3": 960.0, "m4": 880.0}


# -- online Elo --------------------------------------------------------------------------------------------------
def test_online_elo_by_hand():
    battles = table([(1, "A", "B", "model_a"), (2, "B", "C", "tie"), (3, "C", "A", "model_a")])
    # 1. A beats B, both at 1000: E_A = 1 / (1 + 10**0) = 0.5 -> A = 1000 + 16 * 0.5 = 1008, B = 992
    # 2. B (992) ties C (1000): E_B = 1 / (1 + 10**(8/400)) = 1 / (1 + 1.0471285) = 0.4884891
    #    B = 992 + 16 * (0.5 - 0.4884891) = 992.1841743; C = 1000 + 16 * (0.5 - 0.5115109) = 999.8158257
    # 3. C (999.8158257) beats A (1008): E_C = 1 / (1 + 10**(8.1841743/400)) = 1 / (1 + 1.0482393) = 0.4882242
    #    C = 999.8158257 + 16 * (1 - 0.4882242) = 1008.0042385; A = 1008 - 16 * (1 - 0.4882242) = 999.8115873
    elo = online_elo(battles)
    assert list(elo.index) == ["A", "B", "C"]
    assert elo["A"] == pytest.approx(999.8115873, abs=1e-6)
    assert elo["B"] == pytest.approx(992.1841743, abs=1e-6)
    assert elo["C"] == pytest.approx(1008.0042385, abs=1e-6)
    assert elo.sum() == pytest.approx(3000)  # every update is zero-sum


@pytest.mark.parametrize("ties", [0.0, 0.2])
def test_online_elo_agrees_with_evalica(ties):
    import evalica

    # evalica's Winner.X / Winner.Y / Winner.Draw are model_a / model_b / tie; its Elo uses the same curve
    # (base 10, scale 400) and scores a draw tie_weight = 0.5; its default K is 4, so K = 16 is passed explicitly.
    # It updates battle by battle in the order given, as the surveys do.
    battles = synthetic(TRUE, 40, np.random.default_rng(7), ties=ties)
    assert (battles["winner"] == "tie").any() == (ties > 0)
    code = {"model_a": evalica.Winner.X, "model_b": evalica.Winner.Y, "tie": evalica.Winner.Draw}
    theirs = evalica.elo(
        battles["model_a"], battles["model_b"], [code[w] for w in battles["winner"]], initial=1000, k=16
    ).scores
    ours = online_elo(battles)
    assert ours.to_dict() == pytest.approx(theirs.to_dict(), abs=1e-9)


def test_elo_order_bootstrap_spans_the_orders():
    # two battles, A wins one and B the other: only two orders exist
    battles = table([(1, "A", "B", "model_a"), (2, "A", "B", "model_b")])
    # order as given: A = 1008, then B (992) beats A: E_B = 1/(1 + 10**(16/400)) -> A = 1008 - 16 * (1 - E_B)
    e_b = 1 / (1 + 10 ** (16 / 400))
    a_given = 1008 - 16 * (1 - e_b)
    a_reversed = 2000 - a_given  # reversed: B wins first; by symmetry A ends where B ended
    out = elo_order_bootstrap(battles, n_resamples=400, seed=3)
    a = out.set_index("model").loc["A"]
    assert a["rating"] == pytest.approx(a_given)
    assert a["order_low"] == pytest.approx(min(a_given, a_reversed))
    assert a["order_high"] == pytest.approx(max(a_given, a_reversed))
    assert list(out.columns) == [
        "model",
        "rating",
        "order_median",
        "order_low",
        "order_high",
        "n_battles",
        "interval",
    ]
    assert set(out["interval"]) == {"order permutations"} and list(out["n_battles"]) == [2, 2]
    pd.testing.assert_frame_equal(out, elo_order_bootstrap(battles, n_resamples=400, seed=3))


def test_elo_runs_equal_online_elo_of_each_reordered_table():
    """All permutations step together (ratings._elo_runs): each run's final ratings are online_elo of the table
    taken in that run's order, whatever the number of models and the block of runs."""
    from labscale.arena.ratings import _elo_runs, _encoded

    battles = synthetic(TRUE, 12, np.random.default_rng(2), ties=0.2)
    models, a, b, score = _encoded(battles)
    orders = np.random.default_rng(4).permuted(np.tile(np.arange(len(battles), dtype=np.int32), (7, 1)), axis=1)
    runs = _elo_runs(a, b, score, orders, len(models), k=16.0, initial=1000.0, scale=400.0, base=10.0)
    for order, run in zip(orders, runs, strict=True):
        expected = online_elo(battles.iloc[order].reset_index(drop=True), k=16.0)
        np.testing.assert_allclose(run, expected.reindex(models).to_numpy(), rtol=0, atol=1e-9)


# -- Bradley-Terry -----------------------------------------------------------------------------------------------
def test_bradley_terry_agrees_with_choix():
    import choix

    battles = synthetic(TRUE, 30, np.random.default_rng(11))
    assert not (battles["winner"] == "tie").any()
    ours = bradley_terry(battles)
    models = list(ours.index)
    winners = np.where(battles["winner"] == "model_a", battles["model_a"], battles["model_b"])
    losers = np.where(battles["winner"] == "model_a", battles["model_b"], battles["model_a"])
    data = [(models.index(w), models.index(v)) for w, v in zip(winners, losers, strict=True)]
    # opt_pairwise's alpha is the same penalty (alpha * sum(theta**2)) on the same natural log-strengths: the same
    # strictly convex objective, so the two optima differ only by the solvers' stopping tolerances (1e-9 here)
    theta = choix.opt_pairwise(len(models), data, alpha=BT_PENALTY, tol=1e-9)
    theirs = 1000 + ELO_UNIT * (theta - theta.mean())
    np.testing.assert_allclose(ours.to_numpy(), theirs, atol=1e-4)
    # ILSR fits the unpenalised likelihood: a 1e-6 penalty against ~1200 battles a model moves ratings far less
    # than 0.01 Elo points
    theta = choix.ilsr_pairwise(len(models), data, alpha=0.0, tol=1e-10)
    np.testing.assert_allclose(ours.to_numpy(), 1000 + ELO_UNIT * (theta - theta.mean()), atol=1e-2)


def test_bradley_terry_ties_count_half_each_way():
    # one tie is the same likelihood as a win and a loss at half weight: equal ratings; a win and a tie for A
    # (1.5 wins of 2) give P(A beats B) = 0.75, so a lead of 400 * log10(3) Elo points
    assert bradley_terry(table([(1, "A", "B", "tie")])).to_dict() == pytest.approx({"A": 1000, "B": 1000})
    ratings = bradley_terry(table([(1, "A", "B", "model_a"), (2, "B", "A", "tie")]))
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * np.log10(3), abs=1e-3)


def test_bradley_terry_never_beaten_model_stays_finite():
    ratings = bradley_terry(table([(1, "A", "B", "model_a"), (2, "B", "C", "model_a"), (3, "C", "A", "tie")]))
    assert np.isfinite(ratings).all()
    ratings = bradley_terry(table([(1, "A", "B", "model_a"), (2, "A", "B", "model_a")]))
    assert np.isfinite(ratings).all() and ratings["A"] - ratings["B"] > 1000  # large: "above every opponent"


def test_anchored_and_unanchored_scales():
    battles = synthetic(TRUE, 60, np.random.default_rng(5), ties=0.1)
    free, anchored = bradley_terry(battles), bradley_terry(battles, anchor="m3")
    assert free.mean() == pytest.approx(1000)
    assert anchored["m3"] == 1000
    np.testing.assert_allclose((anchored - anchored["m3"]).to_numpy(), (free - free["m3"]).to_numpy(), atol=1e-9)
    out = bradley_terry_intervals(battles, anchor="m3", n_resamples=100, seed=1).set_index("model")
    assert tuple(out.loc["m3", ["rating", "ci_low", "ci_high", "interval"]]) == (1000, 1000, 1000, "degenerate")
    assert set(out.drop(index="m3")["interval"]) <= {"bca", "percentile"}
    assert set(out["anchor"]) == {"m3"} and set(out["n"]) == {60}
    out = bradley_terry_intervals(battles, n_resamples=100, seed=1)
    assert out["rating"].mean() == pytest.approx(1000) and out["anchor"].isna().all()
    assert (out["ci_low"] <= out["rating"]).all() and (out["rating"] <= out["ci_high"]).all()


def test_synthetic_strengths_are_recovered():
    battles = synthetic(TRUE, 300, np.random.default_rng(2024))
    # four intervals that must all cover: Bonferroni level 1 - 0.05 / 4, so this holds for >= 95 % of seeds
    out = bradley_terry_intervals(battles, anchor="m2", n_resamples=200, seed=0, confidence=1 - 0.05 / 4)
    out = out.set_index("model")
    truth = pd.Series(TRUE).reindex(out.index)
    assert ((out["ci_low"] <= truth) & (truth <= out["ci_high"])).all()
    assert (out["rating"] - truth).abs().max() < 40  # ~2.5 standard errors of ~15 Elo points at 300 items
    assert ((out["ci_high"] - out["ci_low"]).drop("m2") < 80).all()
    assert list(out.sort_values("rating", ascending=False).index) == list(TRUE)


def test_item_bootstrap_intervals_cover_at_about_the_nominal_rate():
    rng = np.random.default_rng(99)
    truth, hits = pd.Series(TRUE).drop("m2"), []
    for replicate in range(40):
        battles = synthetic(TRUE, 100, rng)
        out = bradley_terry_intervals(battles, anchor="m2", n_resamples=200, seed=replicate).set_index("model")
        out = out.drop(index="m2").reindex(truth.index)
        hits.extend((out["ci_low"] <= truth) & (truth <= out["ci_high"]))
    # 160 intervals of nominal 95 %: a coverage below 0.85 would be > 4 binomial standard errors short
    assert np.mean(hits) >= 0.85


def test_bca_from_distributions_matches_scipy():
    from scipy.stats import bootstrap

    x = np.random.default_rng(0).exponential(size=40)
    result = bootstrap((x,), np.mean, method="BCa", n_resamples=2000, rng=np.random.default_rng(1))
    jack = (x.sum() - x) / (len(x) - 1)
    low, high, method = bca_from_distributions([x.mean()], result.bootstrap_distribution[:, None], jack[:, None])[0]
    assert method == "bca"
    assert (low, high) == pytest.approx(tuple(result.confidence_interval), rel=1e-12)


def test_bca_from_distributions_fallbacks():
    boot = np.column_stack([np.full(200, 3.0), np.linspace(1, 2, 200), np.linspace(1, 2, 200)])
    jack = np.column_stack([np.full(10, 3.0), np.linspace(1, 2, 10), np.full(10, 1.5)])
    degenerate, edge, flat = bca_from_distributions([3.0, 0.0, 1.5], boot, jack)
    assert degenerate == (3.0, 3.0, "degenerate")
    # an estimate below every resample (z0 = -inf), a constant jackknife (no acceleration): percentile intervals
    assert edge[2] == "percentile" and edge[:2] == pytest.approx(tuple(np.quantile(boot[:, 1], [0.025, 0.975])))
    assert flat[2] == "percentile"


def test_probability_at_least_as_good():
    battles = synthetic(TRUE, 150, np.random.default_rng(8), ties=0.1)
    ratings = bradley_terry(battles)
    out = probability_at_least_as_good(battles, "m1", ["m0", "m4"], n_resamples=200, seed=0).set_index("baseline")
    for baseline in ("m0", "m4"):
        expected = 1 / (1 + 10 ** ((ratings[baseline] - ratings["m1"]) / 400))
        assert out.loc[baseline, "p_win"] == pytest.approx(expected, abs=1e-9)
        assert out.loc[baseline, "ci_low"] <= expected <= out.loc[baseline, "ci_high"]
    assert out.loc["m4", "p_win"] > 0.5 > out.loc["m0", "p_win"]
    # m1 leads m4 by 180 Elo points: every resample agrees; m0 leads m1 by 90: (almost) none puts m1 level
    assert out.loc["m4", "bootstrap_support"] == 1.0 and out.loc["m0", "bootstrap_support"] < 0.05
    assert set(out["n"]) == {150} and set(out["model"]) == {"m1"} and set(out["interval"]) <= {"bca", "percentile"}


def test_item_bootstrap_computed_once_per_battles_resamples_and_seed(monkeypatch):
    import labscale.arena.ratings as ratings

    battles = synthetic(TRUE, 60, np.random.default_rng(3), ties=0.1)
    monkeypatch.setattr(ratings, "_ITEM_BOOTSTRAPS", {})
    first = probability_at_least_as_good(battles, "m1", ["m0"], n_resamples=100, seed=0)
    fits = []
    monkeypatch.setattr(ratings, "_log_strengths", lambda *a: fits.append(a) or pytest.fail("refitted"))
    # the same question again, the intervals and another model's question: no refit, the same numbers
    again = probability_at_least_as_good(battles.copy(), "m1", ["m0"], n_resamples=100, seed=0)
    pd.testing.assert_frame_equal(first, again)
    assert len(bradley_terry_intervals(battles, n_resamples=100, seed=0)) == len(TRUE)
    probability_at_least_as_good(battles, "m2", ["m0"], n_resamples=100, seed=0)
    assert fits == []
    with pytest.raises(pytest.fail.Exception, match="refitted"):  # another seed is another bootstrap
        probability_at_least_as_good(battles, "m1", ["m0"], n_resamples=100, seed=1)
    ((theta, boot, jack),) = ratings._ITEM_BOOTSTRAPS.values()
    assert not (theta.flags.writeable or boot.flags.writeable or jack.flags.writeable)


# -- win rates and calibration -----------------------------------------------------------------------------------
TINY = [(1, "A", "B", "model_a"), (2, "A", "B", "tie"), (3, "B", "A", "model_b"), (4, "B", "C", "model_b")]


def test_win_rates_by_hand():
    rates = win_rates(table(TINY))
    # A vs B: a win, a tie, a win as model_b -> (1 + 0.5 + 1) / 3; C beat B once; A and C never met
    assert rates.loc["A", "B"] == pytest.approx(2.5 / 3) and rates.loc["B", "A"] == pytest.approx(0.5 / 3)
    assert rates.loc["C", "B"] == 1 and rates.loc["B", "C"] == 0
    assert np.isnan(rates.loc["A", "C"]) and np.isnan(rates.loc["C", "A"]) and np.isnan(np.diag(rates)).all()
    predicted = predicted_win_rates(pd.Series({"A": 1400.0, "B": 1000.0, "C": 1000.0}))
    # a 400-point lead: 1 / (1 + 10**-1) = 10/11
    assert predicted.loc["A", "B"] == pytest.approx(10 / 11) and predicted.loc["B", "A"] == pytest.approx(1 / 11)
    assert predicted.loc["B", "C"] == 0.5 and np.isnan(np.diag(predicted)).all()


def test_calibration_by_hand():
    out = calibration(table(TINY), pd.Series({"A": 1400.0, "B": 1000.0, "C": 1000.0}), n_resamples=200)
    # predicted P(model_a wins) 10/11, 10/11, 1/11, 1/2 against outcomes 1, 0.5, 0, 0
    brier = ((1 / 11) ** 2 + (10 / 11 - 0.5) ** 2 + (1 / 11) ** 2 + 0.25) / 4
    assert out["brier"]["value"] == pytest.approx(brier)
    assert out["brier"]["ci_low"] <= brier <= out["brier"]["ci_high"]
    assert out["brier"]["n"] == 4 and out["brier"]["battles"] == 4
    reliability = out["reliability"].set_index("bin")
    assert list(reliability.index) == [0, 5, 9]
    assert reliability.loc[9, "mean_predicted"] == pytest.approx(10 / 11)
    assert reliability.loc[9, "mean_observed"] == 0.75 and reliability.loc[9, "count"] == 2
    assert tuple(reliability.loc[0, ["low", "high", "mean_observed", "count"]]) == pytest.approx((0, 0.1, 0, 1))


# -- the judge gate ----------------------------------------------------------------------------------------------
GOLD = [(1, "A", "B", "model_a"), (2, "A", "B", "model_b"), (3, "A", "C", "tie"), (4, "B", "C", "model_a")]


def test_judge_quality_counts():
    judged = table(
        [
            (1, "B", "A", "model_b"),  # A wins, sides swapped: agrees
            (2, "A", "B", "model_b"),  # agrees
            (3, "C", "A", "tie"),  # agrees
            (4, "B", "C", "model_b"),  # disagrees
            (5, "A", "B", "model_a"),  # no gold verdict: unmatched
        ],
        judge="llm:x",
        consistent=[True, True, pd.NA, False, True],
    )
    out = judge_quality(judged, table(GOLD))
    assert (out["agreement"]["value"], out["agreement"]["n"]) == (0.75, 4)
    assert out["agreement"]["interval"] == "clopper-pearson"
    assert (out["consistency"]["value"], out["consistency"]["n"]) == (0.75, 4)
    assert out["unmatched"] == 1 and out["judge"] == "llm:x" and out["reference"] == "gold"
    assert out["reliable"] and out["reasons"] == []
    assert (out["min_agreement"], out["min_consistency"]) == (MIN_AGREEMENT, MIN_CONSISTENCY)


def test_judge_quality_flags_unreliable_judges():
    judged = table(
        [(1, "A", "B", "model_b"), (2, "A", "B", "model_a"), (3, "A", "C", "tie"), (4, "B", "C", "model_a")],
        judge="llm:x",
        consistent=[False, False, True, True],
    )
    out = judge_quality(judged, table(GOLD))
    assert not out["reliable"] and len(out["reasons"]) == 2
    assert "agreement" in out["reasons"][0] and "0.500 (2/4)" in out["reasons"][0]
    assert "swap consistency" in out["reasons"][1] and "0.500 (2/4)" in out["reasons"][1]
    assert judge_quality(judged, table(GOLD), min_agreement=0.5, min_consistency=0.5)["reliable"]
    unasked = judge_quality(judged.drop(columns="consistent"), table(GOLD), min_agreement=0.5)
    assert not unasked["reliable"] and unasked["reasons"] == [
        "swap consistency was not measured: no battle has a valid verdict in both orders"
    ]


def test_judge_quality_needs_one_reference_verdict_per_pair():
    reference = table([*GOLD, (1, "B", "A", "model_a")])  # item 1: gold says A, then B
    with pytest.raises(InvalidParameter, match="conflicting verdicts on item 1"):
        judge_quality(table(GOLD, judge="llm:x"), reference)


# -- bad input ---------------------------------------------------------------------------------------------------
def test_bad_input_fails_naming_the_value():
    battles = synthetic(TRUE, 5, np.random.default_rng(0))
    with pytest.raises(InvalidParameter, match="unknown anchor 'gpt-5'; valid choices: 'm"):
        bradley_terry(battles, anchor="gpt-5")
    with pytest.raises(InvalidParameter, match="unknown anchor 'gpt-5'"):
        bradley_terry_intervals(battles, anchor="gpt-5", n_resamples=100)
    with pytest.raises(InvalidParameter, match="unknown model 'gpt-5'; valid choices"):
        probability_at_least_as_good(battles, "gpt-5", ["m0"])
    with pytest.raises(InvalidParameter, match="unknown baseline 'gpt-3.5'; valid choices"):
        probability_at_least_as_good(battles, "m1", ["m0", "gpt-3.5"])
    with pytest.raises(InvalidParameter, match="baseline 'm1' is the model itself"):
        probability_at_least_as_good(battles, "m1", "m1")
    for call in (bradley_terry_intervals, elo_order_bootstrap):
        with pytest.raises(InvalidParameter, match=r"n_resamples=99 is out of range; valid range: \[100, inf\]"):
            call(battles, n_resamples=99)
    with pytest.raises(InvalidParameter, match=r"n_resamples=50 is out of range"):
        probability_at_least_as_good(battles, "m1", "m0", n_resamples=50)
    for k in (0, -16):
        with pytest.raises(InvalidParameter, match=rf"k={k} must be positive"):
            online_elo(battles, k=k)
    with pytest.raises(InvalidParameter, match="unknown model 'm4'"):
        calibration(battles, pd.Series({"m0": 1000.0, "m1": 1000.0, "m2": 1000.0, "m3": 1000.0}))
    with pytest.raises(InvalidParameter, match="winner 'draw'"):
        online_elo(table([(1, "A", "B", "draw")]))
    with pytest.raises(InvalidParameter, match="no chain of battles links 'C', 'D' to 'A'"):
        bradley_terry(table([(1, "A", "B", "model_a"), (2, "C", "D", "tie")]))
    with pytest.raises(InvalidParameter, match="one judge's battles"):
        judge_quality(pd.concat([table(GOLD), table(GOLD, judge="llm:x")]), table(GOLD))
