"""Intervals that cover at the book's sample sizes, paired differences, multiplicity, ties and invalid replies."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binom, binomtest

from labscale import metrics as M
from labscale.errors import InvalidParameter
from labscale.tasks import INVALID


# -- coverage -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.5, 0.9, 0.95, 0.98])
def test_proportion_interval_covers_at_n20(p):
    """Seeded simulation: 4,000 accuracies of 20 items each; the interval must cover the true p >= 93 % of the time
    (the percentile bootstrap covered about 61 % at p = 0.95)."""
    n = 20
    draws = np.random.default_rng(7).binomial(n, p, size=4000)
    intervals = {k: M.proportion_of([1] * k + [0] * (n - k)) for k in np.unique(draws)}
    covered = np.mean([intervals[k]["ci_low"] <= p <= intervals[k]["ci_high"] for k in draws])
    exact = sum(binom.pmf(k, n, p) for k in range(n + 1) if M.proportion_ci(k, n)[0] <= p <= M.proportion_ci(k, n)[1])
    print(f"p={p}: simulated coverage {covered:.3f}, exact coverage {exact:.3f}")
    assert covered >= 0.93 and exact >= 0.95  # Clopper-Pearson never covers less than the nominal level


def test_bca_f1_interval_covers_at_n50():
    """Seeded simulation: binary F1 of a classifier with 80 % sensitivity and specificity at prevalence 0.5 (true
    F1 = 0.8) on 300 samples of 50 items; the BCa interval must cover >= 90 % of the time."""
    rng = np.random.default_rng(11)
    n, hits, methods = 50, 0, set()
    for _ in range(300):
        gold = rng.random(n) < 0.5
        right = rng.random(n) < 0.8
        said = np.where(right, gold, ~gold)
        f1 = M.binary_classification_metrics(
            np.where(gold, "y", "n"),
            np.where(said, "y", "n"),
            positive="y",
            negative="n",
            n_resamples=500,
            seed=int(rng.integers(1 << 30)),
        )["f1"]
        hits += f1["ci_low"] <= 0.8 <= f1["ci_high"]
        methods.add(f1["interval"])
    print(f"F1 at n=50: simulated coverage {hits / 300:.3f}")
    assert hits / 300 >= 0.90 and methods == {"bca"}


# -- methods named per metric --------------------------------------------------------------------------------
def test_zero_invalid_of_20_has_the_exact_upper_bound():
    out = M.binary_classification_metrics(["y"] * 10 + ["n"] * 10, ["y"] * 10 + ["n"] * 10, positive="y", negative="n")
    invalid = out["invalid_rate"]
    assert invalid["value"] == 0.0 and invalid["ci_low"] == 0.0
    assert invalid["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 20)) and invalid["ci_high"] == pytest.approx(
        0.168, abs=1e-3
    )
    assert {m["interval"] for m in out.values()} == {"clopper-pearson", "degenerate"}  # F1 = 1 in every resample
    assert out["f1"]["interval"] == "degenerate"


def test_precision_and_recall_are_exact_given_their_denominators():
    gold = ["y", "y", "y", "y", "n", "n", "n", "n", "n", "n"]
    said = ["y", "y", "y", "n", "y", INVALID, "n", "n", "n", "n"]  # tp 3, fn 1, fp 2 (one invalid), tn 4
    out = M.binary_classification_metrics(gold, said, positive="y", negative="n")
    assert out["precision"]["value"] == pytest.approx(3 / 5) and out["precision"]["trials"] == 5
    assert (out["precision"]["ci_low"], out["precision"]["ci_high"]) == pytest.approx(
        (beta.ppf(0.025, 3, 3), beta.ppf(0.975, 4, 2))
    )
    assert out["recall"]["value"] == pytest.approx(3 / 4) and out["recall"]["trials"] == 4
    assert out["precision"]["n"] == out["recall"]["n"] == 10
    assert out["f1"]["value"] == pytest.approx(6 / 9) and out["f1"]["interval"] in ("bca", "percentile")


def test_zero_denominator_gives_the_vacuous_interval():
    out = M.binary_classification_metrics(["n", "n"], ["n", "n"], positive="y", negative="n")
    assert out["precision"]["value"] == 0.0 and (out["precision"]["ci_low"], out["precision"]["ci_high"]) == (0, 1)
    assert out["precision"]["interval"] == "vacuous"


def test_bca_falls_back_to_percentile_and_says_so():
    # leaving any one item out never changes this maximum: the jackknife acceleration is 0 / 0
    value, low, high, method = M._bootstrap(np.max, np.r_[np.zeros(18), 5, 5], n_resamples=400, seed=0)
    assert (value, low, high, method) == (5.0, 0.0, 5.0, "percentile")
    value, low, high, method = M._bootstrap(np.mean, np.arange(20.0), n_resamples=400, seed=0)
    assert method == "bca" and low < value < high
    assert M._bootstrap(np.mean, np.full(20, 0.25), n_resamples=400, seed=0) == (0.25, 0.25, 0.25, "degenerate")


def test_every_interval_method_is_described():
    out = {
        **M.binary_classification_metrics(["y", "n", "y"], ["y", "y", INVALID], positive="y", negative="n"),
        **M.worst_group_accuracy([1, 0, 1], [[1, 0], [0, 1], [1, 1]], ["a", "b"]),
    }
    assert {m["interval"] for m in out.values()} <= set(M.INTERVAL_METHODS)


# -- paired differences and multiplicity ------------------------------------------------------------------------
def test_paired_difference_value_interval_and_exact_permutation_p():
    better = np.array([1, 1, 1, 1, 1, 1, 0, 1], dtype=float)
    worse = np.array([0, 0, 0, 1, 0, 0, 0, 1], dtype=float)
    out = M.paired_difference(M._mean, better, worse, n_resamples=2000, seed=0)
    assert out["value"] == pytest.approx(5 / 8) and out["ci_low"] > 0 and out["interval"] == "bca"
    # 5 items differ, all in favour of `better`: exact sign-flip p = 2 * 2**-5 (two-sided, 2**8 <= n_resamples)
    assert out["p_value"] == pytest.approx(2 / 32) and out["test"] == "paired permutation"
    same = M.paired_difference(M._mean, better, better)
    assert same["value"] == 0.0 and same["p_value"] == 1.0 and same["interval"] == "degenerate"


def test_paired_difference_of_a_non_decomposable_statistic_with_shared_gold():
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 0] * 3, dtype=bool)
    a = gold.copy()
    b = gold.copy()
    b[:6] = ~b[:6]

    def f1(pred, g):
        tp = np.sum(pred & g)
        return 2 * tp / (np.sum(pred) + np.sum(g))

    out = M.paired_difference(f1, a, b, gold, n_resamples=500, seed=1)
    assert out["value"] == pytest.approx(1.0 - f1(b, gold)) and out["ci_low"] > 0 and out["p_value"] < 0.05


@pytest.mark.parametrize(
    "n, p_first, p_second, discordance",
    [(20, 0.5, 0.2, 0.5), (20, 0.3, 0.1, 0.3), (20, 0.9, 0.6, 0.5), (20, 0.5, 0.5, 1.0), (50, 0.5, 0.3, 0.5)],
)
def test_paired_proportion_interval_covers(n, p_first, p_second, discordance):
    """Seeded simulation of two correlated 0/1 outcomes on the same n items (the second copies the first except on a
    share ``discordance`` of items, where it is drawn afresh): Tango's interval covers the true difference
    discordance * (p_first - p_second) >= 93 % of the time (the BCa bootstrap of the mean difference covered
    0.78-0.91 in these settings at n = 20)."""
    rng = np.random.default_rng(5)
    truth, hits = discordance * (p_first - p_second), 0
    for _ in range(1500):
        first = rng.random(n) < p_first
        second = np.where(rng.random(n) < discordance, rng.random(n) < p_second, first)
        out = M.paired_proportion_difference(first, second)
        hits += out["ci_low"] - 1e-9 <= truth <= out["ci_high"] + 1e-9
    print(f"paired difference n={n} ({p_first}, {p_second}, {discordance}): coverage {hits / 1500:.3f}")
    assert hits / 1500 >= 0.93


def test_paired_proportion_difference_known_values():
    # Agresti (Categorical Data Analysis, §10.1): presidential approval, n = 1600, 150 and 86 discordant pairs;
    # at this size Tango's score interval agrees with the Wald interval 0.04 +- 1.96 * 0.00955 to 3 decimals
    first = [1] * 794 + [1] * 150 + [0] * 86 + [0] * 570
    second = [1] * 794 + [0] * 150 + [1] * 86 + [0] * 570
    out = M.paired_proportion_difference(first, second)
    assert out["value"] == pytest.approx(0.04) and out["discordant"] == 236
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((0.0213, 0.0590), abs=5e-4)
    assert out["p_value"] == pytest.approx(binomtest(150, 236).pvalue)
    # no discordant pair: a real interval around 0, never [0, 0]
    none = M.paired_proportion_difference([1, 0] * 10, [1, 0] * 10)
    assert none["value"] == 0 and none["ci_low"] < -0.1 and none["ci_high"] > 0.1 and none["p_value"] == 1.0
    with pytest.raises(InvalidParameter, match="0/1"):
        M.paired_proportion_difference([0.5, 1], [0, 1])


def test_holm_matches_the_step_down_by_hand():
    p = [0.01, 0.04, 0.03, 0.5]
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(3*0.03, .04), max(2*0.04, .09), max(1*0.5, .09)
    assert M.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])


# -- selective prediction: ties ----------------------------------------------------------------------------------
def test_aurc_does_not_depend_on_the_order_of_tied_confidences():
    confidence = [0.9, 0.5, 0.5, 0.5, 0.1]
    correct = [1, 1, 0, 0, 1]
    values = set()
    for order in ([0, 1, 2, 3, 4], [0, 3, 2, 1, 4], [4, 2, 1, 0, 3], [3, 4, 0, 2, 1]):
        values.add(round(M.aurc(np.take(confidence, order), np.take(correct, order)), 12))
        values.add(round(M.e_aurc(np.take(confidence, order), np.take(correct, order)), 12))
    # tied block of losses (0, 1, 1) -> each 2/3: cumulative 0, 2/3, 4/3, 2, 2 over k = 1..5
    expected = np.mean([0, (2 / 3) / 2, (4 / 3) / 3, 2 / 4, 2 / 5])
    assert M.aurc(confidence, correct) == pytest.approx(expected)
    assert len(values) == 2  # one AURC and one E-AURC whatever the input order


# -- SQuAD 2.0: an invalid reply is never a correct abstention ----------------------------------------------------
def test_squad_invalid_replies_are_wrong_not_abstentions():
    references = [[]] * 10 + [["Paris"]] * 10
    invalid = M.squad_v2_metrics(references, [""] * 20, abstained=[False] * 20, invalid=[True] * 20)
    assert invalid["NoAns_exact"]["value"] == 0.0 and invalid["exact"]["value"] == 0.0
    assert invalid["f1"]["value"] == 0.0 and invalid["invalid_rate"]["value"] == 1.0
    abstaining = M.squad_v2_metrics(references, [""] * 20, abstained=[True] * 20, invalid=[False] * 20)
    assert abstaining["NoAns_exact"]["value"] == 1.0 and abstaining["f1"]["value"] == 0.5
    assert abstaining["exact"]["interval"] == "clopper-pearson"


# -- membership inference: the FPR that can be attained --------------------------------------------------------
def test_tpr_is_named_after_the_attainable_fpr():
    members = [True] * 32 + [False] * 32
    scores = np.r_[np.linspace(1, 2, 32), np.linspace(0, 1.5, 32)]
    out = M.membership_metrics(scores, members, fpr=0.01, n_resamples=200)
    assert "tpr_at_1pct_fpr" not in out and out["tpr_at_0pct_fpr"]["requested_fpr"] == 0.01
    assert out["tpr_at_0pct_fpr"]["value"] == pytest.approx(np.mean(np.linspace(1, 2, 32) > 1.5))
    many = M.membership_metrics(np.r_[scores, np.zeros(168)], members + [False] * 168, fpr=0.01, n_resamples=200)
    assert "tpr_at_1pct_fpr" in many and many["tpr_at_1pct_fpr"]["fpr"] == 0.01


# -- BBQ per category ---------------------------------------------------------------------------------------------
def test_bbq_bias_scores_per_category_beside_the_pooled_value():
    answers = ["target", "target", "non_target", "unknown", "target", "non_target"]
    gold = ["unknown", "unknown", "non_target", "unknown", "target", "non_target"]
    contexts = ["ambig", "ambig", "disambig", "ambig", "disambig", "disambig"]
    polarity = ["neg", "neg", "neg", "neg", "neg", "nonneg"]
    cats = ["Age", "Age", "Age", "Gender", "Gender", "Gender"]
    out = M.bbq_bias_scores(answers, gold, contexts, polarity, categories=cats, n_resamples=200)
    # Age ambiguous: 2 of 2 non-unknown answers biased -> s = 1, accuracy 0 -> s_AMB = 1
    assert out["bias_score_ambig[Age]"]["value"] == pytest.approx(1.0)
    # Gender disambiguated: target on neg (biased) + non_target on nonneg (biased) -> s_DIS = 1
    assert out["bias_score_disambig[Gender]"]["value"] == pytest.approx(1.0)
    # Age disambiguated: non_target on a neg question -> s_DIS = -1
    assert out["bias_score_disambig[Age]"]["value"] == pytest.approx(-1.0)
    assert "bias_score_ambig[Gender]" in out and out["bias_score_ambig[Gender]"]["value"] == 0.0  # no non-unknown
    # pooled: ambiguous 2/2 biased, accuracy 1/3 -> (1 - 1/3) * 1
    assert out["bias_score_ambig"]["value"] == pytest.approx(2 / 3)


def test_random_permutation_p_of_sums_agrees_with_scipy_and_has_the_stated_floor():
    rng = np.random.default_rng(3)
    first = rng.normal(0.30, 0.2, 400)
    second = first + rng.normal(0.01, 0.1, 400)
    fast = M.paired_difference(M._mean, first, second, n_resamples=200, n_permutations=20_000, seed=0)
    generic = M.paired_difference(lambda x: float(np.mean(x)), first, second, n_resamples=200, n_permutations=20_000)
    assert fast["value"] == generic["value"] and fast["permutations"] == 20_000
    # the same test (swaps within items), two Monte Carlo draws: within 4 standard errors of each other
    assert abs(fast["p_value"] - generic["p_value"]) < 4 * np.sqrt(0.25 / 20_000) * 2
    # a difference far outside the null: no random swap pattern reaches it, so p is the floor 1 / (N + 1)
    far = M.paired_difference(M._mean, first + 0.2, first, n_resamples=200, n_permutations=999)
    assert far["p_value"] == pytest.approx(1 / 1000)
    # corpus BLEU from summed statistics rows takes the same route
    stats = rng.integers(1, 30, size=(400, 10))
    stats[:, 6:] = stats[:, 2:6] + rng.integers(0, 30, size=(400, 4))
    other = stats.copy()
    other[:, 2] = np.maximum(other[:, 2] - 3, 0)
    bleu = M.paired_difference(M.corpus_bleu, stats, other, n_resamples=200, n_permutations=999)
    assert bleu["value"] == pytest.approx(M.corpus_bleu(stats) - M.corpus_bleu(other)) and bleu["p_value"] < 0.01
