"""Ratings from a battle table (:mod:`labscale.arena.battles`), with the statistics the LLM-arena surveys leave out.

* :func:`online_elo`: the surveys' online Elo (K = 16, every model starting at 1000), exactly as they compute it;
  :func:`elo_order_bootstrap` shows how much it moves when the same battles arrive in another order.
* :func:`bradley_terry`: the order-free maximum-likelihood model behind Elo, on the Elo scale;
  :func:`bradley_terry_intervals` adds item-level BCa bootstrap intervals (all battles of an item resampled
  together), and :func:`probability_at_least_as_good` turns two ratings into the headline number: the probability
  that one model beats another, with its interval.
* :func:`win_rates`, :func:`predicted_win_rates` and :func:`calibration`: actual against predicted win rates.
* :func:`judge_quality`: the gate shown before any rating (agreement with a reference judge, swap consistency).

Ties count as half a win for each side everywhere (Elo's outcome 0.5, Bradley-Terry's half win each way).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..errors import InvalidParameter, check_choice, check_choices, check_range
from ..metrics import CONFIDENCE, _bootstrap, metric, proportion
from .battles import check_battles, models_of

#: the surveys' online Elo: K-factor, starting rating, and the logistic curve's scale and base
ELO_K, ELO_INITIAL, ELO_SCALE, ELO_BASE = 16, 1000, 400, 10
#: L2 penalty on the natural log-strengths of Bradley-Terry (``BT_PENALTY * sum(beta**2)``, choix's ``alpha``):
#: tiny, so it changes nothing where the maximum-likelihood estimate exists, and keeps it finite where it does not
#: (a model that never loses runs off to a large but finite rating instead of infinity)
BT_PENALTY = 1e-6
#: the judge-quality gate: least agreement with the reference judge, least swap consistency
MIN_AGREEMENT, MIN_CONSISTENCY = 0.6, 0.7
#: the ``interval`` name of :func:`elo_order_bootstrap`'s spread: variability from battle order only
ORDER_INTERVAL = "order permutations"

_SCORE = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


# -- checks ------------------------------------------------------------------------------------------------------
def _check_positive(what: str, value: object) -> None:
    check_range(what, value)
    if not value > 0:
        raise InvalidParameter(f"{what}={value!r} must be positive; valid range: (0, inf]")


def _check_curve(scale: float, base: float, initial: float) -> None:
    _check_positive("scale", scale)
    check_range("base", base)
    if not base > 1:
        raise InvalidParameter(f"base={base!r} must exceed 1; valid range: (1, inf]")
    check_range("initial", initial)


def _check_resampling(n_resamples: int, confidence: float) -> None:
    check_range("n_resamples", n_resamples, 100, None, integer=True)
    check_range("confidence", confidence, 0.0, 1.0)


def _check_connected(battles: pd.DataFrame, models: list[str]) -> None:
    """Bradley-Terry can only compare models linked by a chain of battles."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = {m: i for i, m in enumerate(models)}
    a, b = battles["model_a"].map(index).to_numpy(), battles["model_b"].map(index).to_numpy()
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(models), len(models)))
    count, labels = connected_components(graph, directed=False)
    if count > 1:
        apart = [m for m, label in zip(models, labels, strict=True) if label != labels[0]]
        raise InvalidParameter(
            f"no chain of battles links {', '.join(map(repr, apart))} to {models[0]!r}: Bradley-Terry cannot "
            "compare them"
        )


def _encoded(battles: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(models, model_a indices, model_b indices, model_a's scores 1/0/0.5)."""
    models = models_of(battles)
    index = {m: i for i, m in enumerate(models)}
    a = battles["model_a"].map(index).to_numpy(dtype=int)
    b = battles["model_b"].map(index).to_numpy(dtype=int)
    return models, a, b, battles["winner"].map(_SCORE).to_numpy(dtype=float)


# -- online Elo --------------------------------------------------------------------------------------------------
def _elo_runs(a, b, score, orders: np.ndarray, n_models: int, *, k, initial, scale, base) -> np.ndarray:
    """Online Elo of the battles taken in each row of ``orders`` (runs x battles): final ratings, runs x models.

    One step per battle position for all runs at once: the ratings as one flat array indexed ``run * n_models +
    model``, and each position's battles read from a contiguous row of the transposed orders."""
    ratings = np.full((len(orders), n_models), float(initial))
    flat, offsets = ratings.reshape(-1), np.arange(len(orders)) * n_models
    for battle in np.ascontiguousarray(orders.T):
        ia, ib, s = offsets + a[battle], offsets + b[battle], score[battle]
        ra, rb = flat[ia], flat[ib]
        expected = 1.0 / (1.0 + float(base) ** ((rb - ra) / scale))
        flat[ia] = ra + k * (s - expected)
        flat[ib] = rb + k * ((1.0 - s) - (1.0 - expected))
    return ratings


def online_elo(
    battles: pd.DataFrame,
    *,
    k: float = ELO_K,
    initial: float = ELO_INITIAL,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
) -> pd.Series:
    """The surveys' online Elo: battles in table order, each moving both ratings by ``k`` times the surprise.

    With ``E_a = 1 / (1 + base ** ((R_b - R_a) / scale))`` and ``S_a`` = 1, 0, 0.5 for a win, loss, tie of
    ``model_a``: ``R_a += k (S_a - E_a)``, ``R_b += k ((1 - S_a) - (1 - E_a))``. Every model starts at ``initial``.
    """
    _check_positive("k", k)
    _check_curve(scale, base, initial)
    table = check_battles(battles)
    models, a, b, score = _encoded(table)
    order = np.arange(len(table))[None, :]
    ratings = _elo_runs(a, b, score, order, len(models), k=k, initial=initial, scale=scale, base=base)
    return pd.Series(ratings[0], index=pd.Index(models, name="model"), name="elo")


def elo_order_bootstrap(
    battles: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0, confidence: float = CONFIDENCE, **elo_options
) -> pd.DataFrame:
    """Online Elo in the given order and its spread over ``n_resamples`` random orders of the same battles.

    Online Elo weighs late battles more than early ones, so the same battles in another order give other ratings.
    ``order_median``, ``order_low`` and ``order_high`` are the median and central ``confidence`` range of the
    ratings over random permutations of battle order: variability from order alone (``interval`` = "order
    permutations"), not a confidence interval over items (:func:`bradley_terry_intervals` is one).
    """
    _check_resampling(n_resamples, confidence)
    rating = online_elo(battles, **elo_options)  # checks the table and the Elo options
    options = {"k": ELO_K, "initial": ELO_INITIAL, "scale": ELO_SCALE, "base": ELO_BASE, **elo_options}
    table = check_battles(battles)
    models, a, b, score = _encoded(table)
    rng, n = np.random.default_rng(seed), len(table)
    chunk = max(1, 20_000_000 // n)  # permutations per block (80 MB of int32 orders), to bound memory on large tables
    runs = []
    for start in range(0, n_resamples, chunk):
        orders = rng.permuted(np.tile(np.arange(n, dtype=np.int32), (min(chunk, n_resamples - start), 1)), axis=1)
        runs.append(_elo_runs(a, b, score, orders, len(models), **options))
    runs = np.vstack(runs)
    tail = (1 - confidence) / 2
    played = pd.concat([table["model_a"], table["model_b"]]).value_counts()
    return pd.DataFrame(
        {
            "model": models,
            "rating": rating.to_numpy(),
            "order_median": np.median(runs, axis=0),
            "order_low": np.quantile(runs, tail, axis=0),
            "order_high": np.quantile(runs, 1 - tail, axis=0),
            "n_battles": [int(played[m]) for m in models],
            "interval": ORDER_INTERVAL,
        }
    )


# -- Bradley-Terry -----------------------------------------------------------------------------------------------
def _wins(a: np.ndarray, b: np.ndarray, score: np.ndarray, groups: np.ndarray, n_groups: int, n_models: int):
    """Win matrices per group (groups x models x models): ``[g, i, j]`` = wins of i over j, ties half each."""
    wins = np.zeros((n_groups, n_models, n_models))
    np.add.at(wins, (groups, a, b), score)
    np.add.at(wins, (groups, b, a), 1.0 - score)
    return wins


def _log_strengths(wins: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Natural log-strengths maximising the Bradley-Terry likelihood of the win matrix ``wins`` (penalised by
    :data:`BT_PENALTY`), by scipy's exact-Hessian trust-region Newton method."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    games, won = wins + wins.T, wins.sum(axis=1)
    n = len(wins)

    def objective(beta):
        return -np.sum(wins * log_expit(beta[:, None] - beta[None, :])) + BT_PENALTY * beta @ beta

    def gradient(beta):
        p = expit(beta[:, None] - beta[None, :])
        return -(won - np.sum(games * p, axis=1)) + 2 * BT_PENALTY * beta

    def hessian(beta):
        p = expit(beta[:, None] - beta[None, :])
        w = games * p * (1 - p)
        return np.diag(w.sum(axis=1) + 2 * BT_PENALTY) - w

    x0 = np.zeros(n) if start is None else start
    return minimize(objective, x0, jac=gradient, hess=hessian, method="trust-exact", options={"gtol": 1e-9}).x


def _on_elo_scale(beta: np.ndarray, anchor: int | None, *, scale, base, initial) -> np.ndarray:
    """Log-strengths (rows of ``beta``) as Elo-scale ratings: mean ``initial``, or the anchor at ``initial``."""
    beta = np.asarray(beta, dtype=float)
    reference = beta.mean(axis=-1, keepdims=True) if anchor is None else beta[..., anchor : anchor + 1]
    return initial + scale / np.log(base) * (beta - reference)


def _prepared(battles: pd.DataFrame, anchor: str | None) -> tuple[pd.DataFrame, list[str], int | None]:
    table = check_battles(battles)
    models = models_of(table)
    if anchor is not None:
        check_choice("anchor", anchor, models)
    _check_connected(table, models)
    return table, models, None if anchor is None else models.index(anchor)


def bradley_terry(
    battles: pd.DataFrame,
    *,
    anchor: str | None = None,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    initial: float = ELO_INITIAL,
) -> pd.Series:
    """Bradley-Terry ratings by maximum likelihood, on the Elo scale (model -> rating).

    ``P(i beats j) = 1 / (1 + exp(beta_j - beta_i))``; the natural log-strengths ``beta`` minimise the negative
    log-likelihood plus :data:`BT_PENALTY` ``* sum(beta**2)`` (``scipy.optimize.minimize``, trust-exact). A tie
    counts as half a win for each side. ``rating = initial + scale / ln(base) * (beta - reference)``, the
    reference being the mean (ratings average ``initial``) or the ``anchor`` model's (the anchor sits at
    ``initial``); so ``P(i beats j) = 1 / (1 + base ** ((R_j - R_i) / scale))`` as in Elo. Without the penalty a
    model that never loses (or never wins) has no finite estimate: with it, its rating is large but finite, and
    only says "above every opponent".
    """
    _check_curve(scale, base, initial)
    table, models, anchor_index = _prepared(battles, anchor)
    _, a, b, score = _encoded(table)
    wins = _wins(a, b, score, np.zeros(len(a), dtype=int), 1, len(models))[0]
    ratings = _on_elo_scale(_log_strengths(wins), anchor_index, scale=scale, base=base, initial=initial)
    return pd.Series(ratings, index=pd.Index(models, name="model"), name="bradley_terry")


def bca_from_distributions(
    theta: np.ndarray, boot: np.ndarray, jack: np.ndarray, confidence: float = CONFIDENCE
) -> list[tuple[float, float, str]]:
    """``(low, high, method)`` per column of BCa intervals from estimates already computed: ``theta`` (one per
    column), ``boot`` (resamples x columns) and the jackknife ``jack`` (leave-one-out x columns).

    Same formulas as ``scipy.stats.bootstrap(method="BCa")``: bias ``z0`` from the share of resamples below the
    estimate (ties half), acceleration from the jackknife's skewness. Named like ``metrics._bootstrap``: "bca";
    "percentile" (the percentile interval) where BCa is undefined (the estimate at the edge of its bootstrap
    distribution, a constant jackknife); "degenerate" ``(theta, theta)`` where every resample agrees.
    """
    from scipy.special import ndtr, ndtri

    check_range("confidence", confidence, 0.0, 1.0)
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    boot, jack = np.asarray(boot, dtype=float), np.asarray(jack, dtype=float)
    if boot.shape[1:] != theta.shape or jack.shape[1:] != theta.shape:
        raise InvalidParameter(f"boot {boot.shape} and jack {jack.shape} need one column per estimate {theta.shape}")
    alpha = (1 - confidence) / 2
    out = []
    for value, draws, leave_out in zip(theta, boot.T, jack.T, strict=True):
        if np.all(draws == draws[0]):
            out.append((float(value), float(value), "degenerate"))
            continue
        with np.errstate(all="ignore"):
            z0 = ndtri((np.sum(draws < value) + np.sum(draws <= value)) / (2 * len(draws)))
            spread = leave_out.mean() - leave_out
            accel = np.sum(spread**3) / (6 * np.sum(spread**2) ** 1.5)
            z = z0 + ndtri(np.array([alpha, 1 - alpha]))
            levels = ndtr(z0 + z / (1 - accel * z))
        if np.all(np.isfinite(levels)):
            low, high = np.quantile(draws, levels)
            out.append((float(low), float(high), "bca"))
        else:
            low, high = np.quantile(draws, [alpha, 1 - alpha])
            out.append((float(low), float(high), "percentile"))
    return out


#: the last few item bootstraps, keyed by the per-item win matrices, the resamples and the seed: a chapter asks for
#: the same bootstrap once for the ratings' intervals and once per model's headline probabilities
_ITEM_BOOTSTRAPS: dict[tuple, tuple] = {}


def _item_bootstrap(table: pd.DataFrame, n_models: int, n_resamples: int, seed: int):
    """Log-strengths on all items, on ``n_resamples`` item resamples (every battle of a drawn item comes along,
    as often as the item is drawn) and leaving out each item in turn: ``(theta, boot, jack, n_items)``, read-only.

    The same battles, resamples and seed give the same arrays, so they are computed once (:data:`_ITEM_BOOTSTRAPS`)."""
    import hashlib

    _, a, b, score = _encoded(table)
    items, _ = pd.factorize(table["item"])
    n_items = int(items.max()) + 1
    per_item = _wins(a, b, score, items, n_items, n_models)
    key = (hashlib.sha256(per_item.tobytes()).hexdigest(), per_item.shape, n_resamples, seed)
    if key not in _ITEM_BOOTSTRAPS:
        total = per_item.sum(axis=0)
        theta = _log_strengths(total)
        draws = np.random.default_rng(seed).multinomial(n_items, np.full(n_items, 1 / n_items), size=n_resamples)
        resampled = (draws @ per_item.reshape(n_items, -1)).reshape(n_resamples, n_models, n_models)
        boot = np.array([_log_strengths(w, theta) for w in resampled])
        jack = np.array([_log_strengths(total - w, theta) for w in per_item]) if n_items > 1 else theta[None, :]
        for array in (theta, boot, jack):
            array.setflags(write=False)
        while len(_ITEM_BOOTSTRAPS) >= 4:
            _ITEM_BOOTSTRAPS.pop(next(iter(_ITEM_BOOTSTRAPS)))
        _ITEM_BOOTSTRAPS[key] = (theta, boot, jack)
    return (*_ITEM_BOOTSTRAPS[key], n_items)


def bradley_terry_intervals(
    battles: pd.DataFrame,
    *,
    anchor: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    initial: float = ELO_INITIAL,
) -> pd.DataFrame:
    """:func:`bradley_terry` ratings with item-level BCa bootstrap intervals.

    Items, not battles, are resampled: every battle of a drawn item comes along, since battles on one item share
    its difficulty. The BCa acceleration comes from the leave-one-item-out jackknife
    (:func:`bca_from_distributions`). Anchored, an interval is the uncertainty of the rating difference to the
    anchor (whose own interval is degenerate); unanchored, of the difference to the models' mean. Columns: model,
    rating, ci_low, ci_high, n (items), interval, anchor.
    """
    _check_curve(scale, base, initial)
    _check_resampling(n_resamples, confidence)
    table, models, anchor_index = _prepared(battles, anchor)
    theta, boot, jack, n_items = _item_bootstrap(table, len(models), n_resamples, seed)
    ratings = [_on_elo_scale(x, anchor_index, scale=scale, base=base, initial=initial) for x in (theta, boot, jack)]
    intervals = bca_from_distributions(*ratings, confidence=confidence)
    return pd.DataFrame(
        {
            "model": models,
            "rating": ratings[0],
            "ci_low": [low for low, _, _ in intervals],
            "ci_high": [high for _, high, _ in intervals],
            "n": n_items,
            "interval": [method for _, _, method in intervals],
            "anchor": anchor,
        }
    )


def probability_at_least_as_good(
    battles: pd.DataFrame,
    model: str,
    baselines: str | Iterable[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """The headline question with an interval: how likely ``model`` beats each baseline (ties half).

    ``p_win = 1 / (1 + 10 ** ((R_baseline - R_model) / 400))`` from :func:`bradley_terry` ratings, with its
    item-level BCa bootstrap interval (:func:`bradley_terry_intervals`' resamples); ``bootstrap_support`` is the
    share of resamples in which ``model`` rates at least as high as the baseline. Columns: model, baseline, p_win,
    ci_low, ci_high, bootstrap_support, n (items), interval.
    """
    from scipy.special import expit

    _check_resampling(n_resamples, confidence)
    table, models, _ = _prepared(battles, None)
    check_choice("model", model, models)
    chosen = check_choices("baseline", baselines, models)
    if model in chosen:
        raise InvalidParameter(f"baseline {model!r} is the model itself; valid choices: {models!r} except it")
    theta, boot, jack, n_items = _item_bootstrap(table, len(models), n_resamples, seed)
    i, others = models.index(model), [models.index(m) for m in chosen]

    def p_win(beta: np.ndarray) -> np.ndarray:  # same as the Elo-scale formula: the scale cancels
        return expit(beta[..., [i]] - beta[..., others])

    intervals = bca_from_distributions(p_win(theta), p_win(boot), p_win(jack), confidence=confidence)
    return pd.DataFrame(
        {
            "model": model,
            "baseline": chosen,
            "p_win": p_win(theta),
            "ci_low": [low for low, _, _ in intervals],
            "ci_high": [high for _, high, _ in intervals],
            "bootstrap_support": np.mean(boot[:, [i]] >= boot[:, others], axis=0),
            "n": n_items,
            "interval": [method for _, _, method in intervals],
        }
    )


# -- win rates and calibration -----------------------------------------------------------------------------------
def win_rates(battles: pd.DataFrame) -> pd.DataFrame:
    """Actual win rates: row ``model``'s share of its battles against column ``opponent`` that it won, ties
    counting half; NaN where the two never met (and on the diagonal)."""
    table = check_battles(battles)
    models = models_of(table)
    score = table["winner"].map(_SCORE)
    both_sides = pd.DataFrame(
        {
            "model": [*table["model_a"], *table["model_b"]],
            "opponent": [*table["model_b"], *table["model_a"]],
            "score": [*score, *(1 - score)],
        }
    )
    rates = both_sides.pivot_table(index="model", columns="opponent", values="score", aggfunc="mean")
    return rates.reindex(index=models, columns=models).astype(float)


def _predicted(difference: np.ndarray, scale: float, base: float) -> np.ndarray:
    """Elo's (and Bradley-Terry's) win probability for a rating lead of ``difference``."""
    return 1.0 / (1.0 + float(base) ** (-np.asarray(difference, dtype=float) / scale))


def predicted_win_rates(ratings: pd.Series, scale: float = ELO_SCALE, base: float = ELO_BASE) -> pd.DataFrame:
    """Predicted win rates: ``1 / (1 + base ** ((R_opponent - R_model) / scale))`` for row ``model`` against
    column ``opponent``; NaN on the diagonal, as in :func:`win_rates`."""
    _check_curve(scale, base, 0.0)
    r = ratings.to_numpy(dtype=float)
    rates = _predicted(r[:, None] - r[None, :], scale, base)
    np.fill_diagonal(rates, np.nan)
    names = list(ratings.index)
    return pd.DataFrame(rates, index=pd.Index(names, name="model"), columns=pd.Index(names, name="opponent"))


def calibration(
    battles: pd.DataFrame,
    ratings: pd.Series,
    bins: int = 10,
    *,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """How well ``ratings`` predict the battles: the Brier score and a reliability table.

    Each battle's predicted probability that ``model_a`` wins (:func:`predicted_win_rates`' formula) is compared
    with its outcome (1, 0, 0.5 for a win, loss, tie). ``brier`` is the mean squared difference as a
    ``metrics.metric`` dict with the BCa bootstrap interval over items (``metrics._bootstrap`` on per-item sums of
    squared errors and battle counts, so an item's battles are resampled together); the ratings are held fixed, so
    the interval does not include their own estimation error (and is optimistic when they were fitted to these
    battles). ``reliability``: per equal-width bin of the predicted probability that holds battles, the bin, its
    bounds, the mean predicted probability, the mean outcome and the battle count.
    """
    _check_curve(scale, base, 0.0)
    check_range("bins", bins, 1, None, integer=True)
    check_range("n_resamples", n_resamples, 100, None, integer=True)
    table = check_battles(battles, models=list(ratings.index))
    predicted = _predicted(
        table["model_a"].map(ratings).to_numpy(float) - table["model_b"].map(ratings).to_numpy(float), scale, base
    )
    observed = table["winner"].map(_SCORE).to_numpy(dtype=float)
    per_item = pd.DataFrame({"item": table["item"], "error": (predicted - observed) ** 2}).groupby("item", sort=False)
    sums, counts = per_item["error"].sum().to_numpy(), per_item["error"].size().to_numpy()
    value, low, high, method = _bootstrap(
        lambda s, c: s.sum() / c.sum(), sums, counts, n_resamples=n_resamples, seed=seed
    )
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, bins - 1)
    binned = pd.DataFrame({"bin": which, "predicted": predicted, "observed": observed}).groupby("bin")
    reliability = pd.DataFrame(
        {
            "mean_predicted": binned["predicted"].mean(),
            "mean_observed": binned["observed"].mean(),
            "count": binned.size(),
        }
    ).reset_index()
    reliability.insert(1, "low", edges[reliability["bin"]])
    reliability.insert(2, "high", edges[reliability["bin"] + 1])
    brier = metric(value, low, high, len(sums), interval=method, battles=len(table))
    return {"brier": brier, "reliability": reliability}


# -- the judge gate ----------------------------------------------------------------------------------------------
def _verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Each battle's (item, pair) key, the pair sorted, and its verdict as the winner's name or "tie"."""
    first = table[["model_a", "model_b"]].min(axis=1)
    second = table[["model_a", "model_b"]].max(axis=1)
    verdict = np.where(
        table["winner"] == "model_a", table["model_a"], np.where(table["winner"] == "model_b", table["model_b"], "tie")
    )
    return pd.DataFrame({"item": table["item"], "first": first, "second": second, "verdict": verdict})


def _single_judge(table: pd.DataFrame, what: str) -> str:
    judges = list(dict.fromkeys(table["judge"]))
    if len(judges) != 1:
        raise InvalidParameter(f"{what} must hold one judge's battles; got judges {', '.join(map(repr, judges))}")
    return str(judges[0])


def judge_quality(
    battles: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    min_agreement: float = MIN_AGREEMENT,
    min_consistency: float = MIN_CONSISTENCY,
) -> dict:
    """The gate shown before any rating: does this judge agree with a reference judge, and with itself?

    * ``agreement``: the share of the judge's battles whose verdict (the winner's name or "tie") matches the
      reference judge's (gold, reference similarity) on the same item and pair of models, whichever side each
      table put a model on; battles on an (item, pair) the reference never judged are left out (``unmatched``).
      The reference must give one verdict per item and pair;
    * ``consistency``: the share of battles with a ``consistent`` flag (asked in both orders) whose two verdicts
      agreed;

    both as ``metrics.proportion`` dicts (Clopper-Pearson). ``reliable`` when both point estimates reach
    ``min_agreement`` (:data:`MIN_AGREEMENT`) and ``min_consistency`` (:data:`MIN_CONSISTENCY`); an unmeasured one
    (no matched battle, no battle asked in both orders) does not. ``reasons`` says why not (empty when reliable).
    """
    check_range("min_agreement", min_agreement, 0.0, 1.0)
    check_range("min_consistency", min_consistency, 0.0, 1.0)
    table, gold = check_battles(battles), check_battles(reference)
    judge, reference_judge = _single_judge(table, "battles"), _single_judge(gold, "reference")
    keys = ["item", "first", "second"]
    truth = _verdicts(gold).drop_duplicates()
    conflicting = truth[truth.duplicated(keys, keep=False)]
    if len(conflicting):
        row = conflicting.iloc[0]
        item = conflicting["item"].tolist()[0]  # a plain Python value, for the message
        raise InvalidParameter(
            f"reference judge {reference_judge!r} gives conflicting verdicts on item {item!r} for "
            f"{row['first']!r} vs {row['second']!r}; it must give one verdict per item and pair"
        )
    matched = _verdicts(table).merge(truth, on=keys, how="left", suffixes=("", "_reference"))
    found = matched["verdict_reference"].notna()
    agreed = int((matched.loc[found, "verdict"] == matched.loc[found, "verdict_reference"]).sum())
    flags = table["consistent"][table["consistent"].notna()].astype(bool)
    agreement, consistency = proportion(agreed, int(found.sum())), proportion(int(flags.sum()), len(flags))
    reasons = []
    if not found.any():
        reasons.append(f"no battle shares an item and pair of models with reference judge {reference_judge!r}")
    elif agreement["value"] < min_agreement:
        reasons.append(
            f"agreement with {reference_judge!r} is {agreement['value']:.3f} ({agreed}/{int(found.sum())}), "
            f"below {min_agreement:g}"
        )
    if flags.empty:
        reasons.append("swap consistency was not measured: no battle has a valid verdict in both orders")
    elif consistency["value"] < min_consistency:
        reasons.append(
            f"swap consistency is {consistency['value']:.3f} ({int(flags.sum())}/{len(flags)}), below "
            f"{min_consistency:g}"
        )
    return {
        "judge": judge,
        "reference": reference_judge,
        "agreement": agreement,
        "consistency": consistency,
        "unmatched": int((~found).sum()),
        "min_agreement": min_agreement,
        "min_consistency": min_consistency,
        "reliable": not reasons,
        "reasons": reasons,
    }


__all__ = [
    "BT_PENALTY",
    "ELO_BASE",
    "ELO_INITIAL",
    "ELO_K",
    "ELO_SCALE",
    "MIN_AGREEMENT",
    "MIN_CONSISTENCY",
    "ORDER_INTERVAL",
    "bca_from_distributions",
    "bradley_terry",
    "bradley_terry_intervals",
    "calibration",
    "elo_order_bootstrap",
    "judge_quality",
    "online_elo",
    "predicted_win_rates",
    "probability_at_least_as_good",
    "win_rates",
]
