"""Selective prediction from run records: would the model's own confidence tell its right answers from its wrong
ones? (methods.md §B3: risk-coverage curve, AURC, E-AURC, AUROC.)

The confidence is read from the run record: by default the **sequence log-probability** of the generated reply
(the sum of its tokens' log-probabilities under the model, recorded by the Hugging Face backend while it generated
greedily); ``"mean_logprob"`` divides it by the number of generated tokens, so long answers are not penalised for
their length. API runs have no log-probabilities and are refused. Correctness per item is recomputed from the
record's parsed answers against the task's references: the data is reloaded from the record's own parameters
(task, source, data path, options, data seed), and its content hash must match the one the run recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidParameter, check_choice

CONFIDENCE_SOURCES = ("logprob", "mean_logprob")
CORRECTNESS = ("exact", "f1")


def item_outcomes(run_dir: str | Path, *, confidence: str = "logprob", correct: str = "exact") -> pd.DataFrame:
    """One row per item of a QA run record: id, confidence, correct (``"exact"``: exact match, 0/1; ``"f1"``: token
    F1), parsed answer, and whether the model abstained."""
    check_choice("confidence source", confidence, CONFIDENCE_SOURCES)
    check_choice("correctness", correct, CORRECTNESS)
    from . import records
    from .tasks import get_task

    run = records.read_run(run_dir)
    params, preds = run["params"], run["predictions"]
    if "logprob" not in preds.columns or preds["logprob"].isna().any():
        raise InvalidParameter(
            f"run {str(run_dir)!r} has no sequence log-probabilities (only local Hugging Face "
            "runs record them); selective prediction needs a confidence per reply"
        )
    task = get_task(params["task"])
    if "f1" not in task.item_score_names:
        raise InvalidParameter(
            f"selective prediction needs a QA task with per-item scores (qasper, squad_v2), got {params['task']!r}"
        )
    from .compare import run_examples

    examples = run_examples(run)
    parsed = preds["parsed"].astype(str).tolist()
    scores = task.item_scores(examples, parsed)
    conf = preds["logprob"].to_numpy(dtype=float)
    if confidence == "mean_logprob":
        conf = conf / np.maximum(preds["completion_tokens"].to_numpy(dtype=float), 1)
    from .tasks.qasper import UNANSWERABLE

    return pd.DataFrame(
        {
            "id": preds["id"],
            "confidence": conf,
            "correct": scores[correct],
            "parsed": parsed,
            "abstained": [p == UNANSWERABLE for p in parsed],
        }
    )


def selective_report(
    run_dir: str | Path,
    *,
    confidence: str = "logprob",
    correct: str = "exact",
    coverage: float = 0.5,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Selective-prediction metrics of one run record (AURC, E-AURC, AUROC, risk at ``coverage`` and at full
    coverage, with 95% CIs), its risk-coverage curve, and which confidence and correctness were used."""
    from .metrics import risk_coverage_curve, selective_metrics

    outcomes = item_outcomes(run_dir, confidence=confidence, correct=correct)
    params = json.loads((Path(run_dir) / "params.json").read_text())
    metrics = selective_metrics(
        outcomes["confidence"], outcomes["correct"], coverage=coverage, n_resamples=n_resamples, seed=seed
    )
    curve = pd.DataFrame(risk_coverage_curve(outcomes["confidence"], outcomes["correct"]))
    source = {
        "logprob": "sequence log-probability of the greedy reply (sum over its tokens)",
        "mean_logprob": "mean token log-probability of the greedy reply",
    }[confidence]
    return {
        "run": str(run_dir),
        "model": params["model"],
        "task": params["task"],
        "scenario": params.get("scenario"),
        "confidence_source": source,
        "correctness": correct,
        "metrics": metrics,
        "curve": curve,
        "outcomes": outcomes,
    }


def selective_table(reports: list[dict[str, Any]], digits: int = 3) -> pd.DataFrame:
    """One row per report: model, task, scenario, items, accuracy and each selective metric as "value [95% CI]"."""
    from .report import format_ci

    rows = []
    for r in reports:
        row = {
            "model": r["model"],
            "task": r["task"],
            "scenario": r["scenario"],
            "items": len(r["outcomes"]),
            "correct (mean)": round(float(r["outcomes"]["correct"].mean()), digits),
        }
        for name, m in r["metrics"].items():
            row[name] = format_ci(m["value"], m["ci_low"], m["ci_high"], digits)
        row["confidence"] = r["confidence_source"]
        rows.append(row)
    return pd.DataFrame(rows)
