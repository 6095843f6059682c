"""ViGGO (Juraska et al., 2019) evaluation: meaning-representation parsing and scoring in both directions.

Sentence -> MR: :func:`parse_mr`, :func:`score_mr` per item and :func:`mr_metrics` over a set (exact intervals for
the proportions, BCa for the micro slot precision/recall/F1). MR -> sentence: :func:`slot_error_rate` and
:func:`sentence_metrics` (slot error rate and ROUGE-L, BCa).

Values are split on ``", "`` only inside the list-valued attributes (:data:`LIST_ATTRIBUTES`): in the released
files ``exp_release_date[August 14, 2018]`` and ``developer[Spectrum HoloByte, Inc.]`` are single values that
contain ``", "``, so splitting them would invent slots.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labscale.errors import InvalidParameter
from labscale.metrics import _bootstrap, metric, proportion_of, rouge_fmeasures

#: the nine ViGGO dialogue-act functions
FUNCTIONS = (
    "inform",
    "request",
    "give_opinion",
    "confirm",
    "verify_attribute",
    "suggest",
    "request_explanation",
    "recommend",
    "request_attribute",
)
#: attributes whose bracket holds a ``", "``-separated list; every other attribute holds one value
LIST_ATTRIBUTES = frozenset({"genres", "platforms", "player_perspective"})
#: yes/no attributes: the slot counts as mentioned when the sentence names the feature (polarity is not checked)
BOOLEAN_KEYWORDS = {
    "available_on_steam": ("steam",),
    "has_linux_release": ("linux",),
    "has_mac_release": ("mac", "macos", "os x"),
    "has_multiplayer": ("multiplayer", "multi player", "single player", "co op", "online"),
}
#: extra surface forms accepted for some values (after :func:`_norm`)
ALIASES = {
    "rating": {
        "poor": ("poor", "bad", "terrible", "awful"),
        "average": ("average", "mediocre", "okay", "ok", "decent"),
        "good": ("good", "solid", "decent"),
        "excellent": ("excellent", "great", "amazing", "fantastic", "outstanding"),
    },
    "genres": {"role playing": ("role playing", "rpg"), "driving/racing": ("driving", "racing")},
    "player_perspective": {"bird view": ("bird view", "bird's eye", "birds eye", "top down", "overhead")},
}

_MR = re.compile(r"\s*([A-Za-z_]+)\((.*)\)\s*\.?\s*", re.DOTALL)
_SLOT = re.compile(r"([A-Za-z_]+)\[([^\[\]]*)\]")
_SEPARATOR = re.compile(r",\s*")


@dataclass(frozen=True)
class MeaningRepresentation:
    """A parsed MR: the dialogue-act ``function`` and ``slots`` (attribute -> lowercased values; empty = attribute
    only). ``known`` says whether the function is one of :data:`FUNCTIONS`."""

    function: str
    slots: dict[str, frozenset[str]]

    @property
    def known(self) -> bool:
        return self.function in FUNCTIONS

    def pairs(self) -> set[tuple[str, str]]:
        """The (attribute, value) pairs; an attribute-only slot is ``(attribute, "")``."""
        return {(a, v) for a, values in self.slots.items() for v in (values or {""})}


def _values(attribute: str, raw: str) -> frozenset[str] | None:
    """The normalised values of one bracket (``None`` if a list item is empty)."""
    raw = raw.strip()
    if not raw:
        return frozenset()
    items = _SEPARATOR.split(raw) if attribute in LIST_ATTRIBUTES else [raw]
    values = [" ".join(v.split()).lower() for v in items]
    return None if any(not v for v in values) else frozenset(values)


def _slots(body: str) -> dict[str, frozenset[str]] | None:
    """Slots of the text between the function's parentheses; ``None`` unless it is exactly ``a[..], b[..]``."""
    slots: dict[str, frozenset[str]] = {}
    pos, body = 0, body.strip()
    while pos < len(body):
        match = _SLOT.match(body, pos)
        if match is None:
            return None
        attribute, values = match.group(1).lower(), _values(match.group(1).lower(), match.group(2))
        if values is None or attribute in slots:
            return None
        slots[attribute] = values
        pos = match.end()
        if pos < len(body):
            sep = _SEPARATOR.match(body, pos)
            if sep is None or sep.end() == len(body):
                return None
            pos = sep.end()
    return slots


def parse_mr(text: str) -> MeaningRepresentation | None:
    """Parse ``function(attr[v1, v2], attr[])``; ``None`` for anything malformed (an unknown function is kept and
    flagged by :attr:`MeaningRepresentation.known`). Surrounding whitespace and one trailing period are allowed."""
    if not isinstance(text, str):
        raise InvalidParameter(f"an MR must be a string, got {text!r}")
    match = _MR.fullmatch(text)
    if match is None:
        return None
    slots = _slots(match.group(2))
    return None if slots is None else MeaningRepresentation(match.group(1).lower(), slots)


def _gold(text: str | MeaningRepresentation) -> MeaningRepresentation:
    """A gold MR, parsed; :class:`InvalidParameter` naming it if it does not parse."""
    if isinstance(text, MeaningRepresentation):
        return text
    gold = parse_mr(text)
    if gold is None:
        raise InvalidParameter(f"gold MR {text!r} does not parse")
    return gold


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def _strict(text: str) -> str:
    return " ".join(text.split())


def score_mr(pred_text: str, gold_text: str) -> dict:
    """Per-item scores of a predicted MR against the gold one: validity, function, slot counts and P/R/F1 over
    (attribute, value) pairs, order-insensitive ``exact_match`` and string-level ``strict_exact_match``."""
    gold = _gold(gold_text)
    pred = parse_mr(pred_text)
    truth = gold.pairs()
    said = pred.pairs() if pred is not None else set()
    tp, fp, fn = len(said & truth), len(said - truth), len(truth - said)
    precision, recall, f1 = _prf(tp, fp, fn)
    function_correct = pred is not None and pred.function == gold.function
    return {
        "valid": pred is not None,
        "function_correct": function_correct,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "exact_match": function_correct and pred.slots == gold.slots,
        "strict_exact_match": isinstance(gold_text, str) and _strict(pred_text) == _strict(gold_text),
    }


def _check_lengths(what: str, first: Sequence, second: Sequence) -> None:
    if len(first) != len(second):
        raise InvalidParameter(f"{what} differ in length: {len(first)} vs {len(second)}")
    if not len(first):
        raise InvalidParameter(f"cannot score zero items ({what} are empty)")


def _micro(index: int):
    """Statistic: micro precision (0), recall (1) or F1 (2) of summed (tp, fp, fn) rows."""

    def statistic(rows: np.ndarray) -> float:
        return _prf(*rows.sum(axis=0))[index]

    return statistic


def _bca(statistic, data: np.ndarray, n_resamples: int, seed: int) -> dict:
    value, low, high, method = _bootstrap(statistic, data, n_resamples=n_resamples, seed=seed)
    return metric(value, low, high, len(data), interval=method)


def mr_metrics(
    preds: Sequence[str], golds: Sequence[str], *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Valid rate, function accuracy, exact and strict exact match (Clopper-Pearson) and micro slot
    precision/recall/F1 (BCa over items), each as a :func:`labscale.metrics.metric` dict."""
    _check_lengths("preds and golds", preds, golds)
    items = [score_mr(p, g) for p, g in zip(preds, golds, strict=True)]
    rows = np.array([[s["tp"], s["fp"], s["fn"]] for s in items], dtype=float)
    out = {
        name: proportion_of([s[key] for s in items])
        for name, key in (
            ("valid_rate", "valid"),
            ("function_accuracy", "function_correct"),
            ("exact_match", "exact_match"),
            ("strict_exact_match", "strict_exact_match"),
        )
    }
    for index, name in enumerate(("slot_precision", "slot_recall", "slot_f1")):
        out[name] = _bca(_micro(index), rows, n_resamples, seed)
    return out


def _norm(text: str) -> str:
    """Lowercase, hyphens as spaces, whitespace collapsed."""
    return " ".join(text.lower().replace("-", " ").split())


def _mentioned(sentence: str, forms: Sequence[str]) -> bool:
    """Whether any of ``forms`` occurs in ``sentence`` (normalised) as a whole-word substring."""
    return any(re.search(rf"(?<!\w){re.escape(_norm(f))}(?!\w)", sentence) for f in forms)


def _forms(attribute: str, value: str) -> tuple[str, ...]:
    """Surface forms that realise one slot value."""
    if attribute in BOOLEAN_KEYWORDS and value in ("yes", "no"):
        return BOOLEAN_KEYWORDS[attribute]
    if attribute == "esrb":
        code, _, rest = value.partition(" (for ")
        return (value, f"rated {code}", f"{code} rated", f"{code} rating", *((rest.rstrip(")"),) if rest else ()))
    return (value, *ALIASES.get(attribute, {}).get(value, ()))


def slot_error_rate(sentence: str, mr: str | MeaningRepresentation) -> float:
    """Share of the MR's slot values that ``sentence`` does not mention (whole-word, case-insensitive, hyphens as
    spaces). Yes/no slots count as mentioned when the feature is named (:data:`BOOLEAN_KEYWORDS`; polarity is not
    checked); ratings, some genres and perspectives accept :data:`ALIASES`; an ESRB value also matches its
    parenthesised name ("everyone 10 and older") or its code beside "rated"/"rating" ("M rated"); years match as
    numbers. Attribute-only slots are not counted; an MR with no values scores 0.0. Human ViGGO test references
    score about 0.10 (paraphrased ratings and omitted genres), so compare systems, not against zero."""
    if not isinstance(sentence, str):
        raise InvalidParameter(f"a sentence must be a string, got {sentence!r}")
    parsed = _gold(mr)
    text = _norm(sentence)
    pairs = [(a, v) for a, v in parsed.pairs() if v]
    missed = sum(not _mentioned(text, _forms(a, v)) for a, v in pairs)
    return _ratio(missed, len(pairs))


def best_rouge_l(sentence: str, references: str | Sequence[str]) -> float:
    """ROUGE-L F-measure of ``sentence`` against its best reference."""
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise InvalidParameter(f"no reference for sentence {sentence!r}")
    return float(rouge_fmeasures(refs, [sentence] * len(refs), ("rougeL",))["rougeL"].max())


def sentence_metrics(
    sentences: Sequence[str],
    mrs: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """Mean slot error rate and mean ROUGE-L (best over an item's references), each with a BCa interval."""
    _check_lengths("sentences and mrs", sentences, mrs)
    _check_lengths("sentences and references", sentences, references)
    ser = np.array([slot_error_rate(s, m) for s, m in zip(sentences, mrs, strict=True)])
    rouge = np.array([best_rouge_l(s, r) for s, r in zip(sentences, references, strict=True)])
    return {
        "slot_error_rate": _bca(_mean, ser, n_resamples, seed),
        "rouge_l": _bca(_mean, rouge, n_resamples, seed),
    }


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))
