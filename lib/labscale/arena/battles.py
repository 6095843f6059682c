"""The battle table: one row per judged pair of answers to one item.

Columns (:data:`BATTLE_COLUMNS`):

* ``item``: the item id both answers respond to;
* ``model_a``, ``model_b``: the two runs' labels (``labscale.summary_scores.run_label``: model and scenario);
* ``winner``: ``"model_a"``, ``"model_b"`` or ``"tie"`` (:data:`WINNERS`);
* ``judge``: who decided (``"gold"``, ``"reference:<metric>±<band>"``, ``"llm:<model>"``, ``"human:<annotator>"``);
* ``order``: ``"ab"`` when ``model_a``'s answer was shown first, ``"ba"`` otherwise (judges that see no order: "ab");
* ``seed``: the seed that drew the presentation order (and anything else random about the battle);
* ``consistent``: for a judge asked in both orders, whether the two verdicts agreed (else missing).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence

import pandas as pd

from ..errors import InvalidParameter, check_range

BATTLE_COLUMNS = ("item", "model_a", "model_b", "winner", "judge", "order", "seed", "consistent")
WINNERS = ("model_a", "model_b", "tie")
ORDERS = ("ab", "ba")


def check_battles(battles: pd.DataFrame, models: Iterable[str] | None = None) -> pd.DataFrame:
    """``battles`` checked: every column present, winners and orders valid, no model against itself, and (with
    ``models``) no unknown model. Returns the table with :data:`BATTLE_COLUMNS` first; fails naming the first bad
    row and the valid values."""
    missing = [c for c in BATTLE_COLUMNS if c not in battles.columns and c != "consistent"]
    if missing:
        raise InvalidParameter(
            f"the battle table lacks the column(s) {', '.join(missing)}; expected {', '.join(BATTLE_COLUMNS)}"
        )
    out = battles.copy()
    if "consistent" not in out.columns:
        out["consistent"] = pd.NA
    if out.empty:
        raise InvalidParameter("the battle table is empty")
    bad = out[~out["winner"].isin(WINNERS)]
    if len(bad):
        raise InvalidParameter(
            f"battle {bad.index[0]} has winner {bad['winner'].iloc[0]!r}; valid choices: "
            f"{', '.join(map(repr, WINNERS))}"
        )
    bad = out[~out["order"].isin(ORDERS)]
    if len(bad):
        raise InvalidParameter(
            f"battle {bad.index[0]} has order {bad['order'].iloc[0]!r}; valid choices: {', '.join(map(repr, ORDERS))}"
        )
    self_play = out[out["model_a"] == out["model_b"]]
    if len(self_play):
        row = self_play.iloc[0]
        raise InvalidParameter(
            f"battle {self_play.index[0]} pits {row['model_a']!r} against itself on item {row['item']!r}"
        )
    if models is not None:
        known = list(models)
        for column in ("model_a", "model_b"):
            unknown = out[~out[column].isin(known)]
            if len(unknown):
                raise InvalidParameter(
                    f"battle {unknown.index[0]} names unknown model {unknown[column].iloc[0]!r}; valid choices: "
                    f"{', '.join(map(repr, known))}"
                )
    columns = [*BATTLE_COLUMNS, *[c for c in out.columns if c not in BATTLE_COLUMNS]]
    return out[columns].reset_index(drop=True)


def models_of(battles: pd.DataFrame) -> list[str]:
    """Every model in ``battles``, in order of first appearance."""
    return list(dict.fromkeys([*battles["model_a"], *battles["model_b"]]))


def pairs(labels: Iterable[str]) -> list[tuple[str, str]]:
    """Every unordered pair of ``labels`` once, in the order of ``labels``: ``(a, b), (a, c), (b, c)`` for
    ``[a, b, c]``. Fewer than two labels, or a label given twice, is refused."""
    labels = list(labels)
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise InvalidParameter(f"labels name {twice} more than once; list each run once")
    if len(labels) < 2:
        raise InvalidParameter(f"a battle needs at least two runs, got {labels!r}")
    return list(itertools.combinations(labels, 2))


def presentation_order(seed: int, item: str, model_a: str, model_b: str) -> str:
    """Which answer a judge sees first for one item and pair: ``"ab"`` (``model_a``'s) or ``"ba"``, a fair coin
    drawn from ``seed`` and the battle itself, so a battle's draw does not depend on the other battles judged."""
    check_range("seed", seed, 0, 2**32 - 1, integer=True)
    digest = hashlib.sha256(json.dumps([seed, str(item), model_a, model_b]).encode()).digest()
    return ORDERS[digest[0] & 1]


def presentation_orders(battles: Sequence[tuple[str, str, str]], seed: int) -> list[str]:
    """:func:`presentation_order` of each ``(item, model_a, model_b)`` of ``battles``."""
    return [presentation_order(seed, item, a, b) for item, a, b in battles]


__all__ = [
    "BATTLE_COLUMNS",
    "ORDERS",
    "WINNERS",
    "check_battles",
    "models_of",
    "pairs",
    "presentation_order",
    "presentation_orders",
]
