"""The study's released summarization runs as run records, and the checks that they reproduce the authors' metrics.

:func:`record_released_runs` turns each released run (:mod:`labscale.data.study_outputs`) into a run record through
the run protocol (:func:`labscale.protocol.execute`): the "model" is a ``released`` model spec whose identity is the
authors' repository, commit and file hash; the items are MTS-Dialog TestSet-1 then TestSet-2 from the registry's
release files; the summaries are scored as the authors' text (no parsing beyond "empty is invalid") with the same
per-item scores and intervals as our own summarization runs, so every table, plot and comparison treats them alike.

:func:`reproduction_table` sets our recomputation beside the authors' metric files and the study's Table 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import progress as progress_bars
from . import records
from .backends import ModelSpec
from .core import INVALID, Source
from .data import study_outputs
from .data.study_outputs import ReleasedRun
from .errors import InvalidParameter, check_range
from .metrics import hf_bleu, prefetch_bertscore, summary_item_scores, summary_metrics_from_items
from .protocol import Produced, RunSpec, execute, is_current
from .tasks import get_task

EXPERIMENT = "study_outputs"
#: tolerances of :func:`reproduction_table`: BLEU to 4 decimals, ROUGE within 0.003 of the authors' bootstrap
#: aggregate (HF ``evaluate`` reports the middle of a bootstrap of item means, not the mean itself)
BLEU_TOLERANCE = 5e-5
ROUGE_TOLERANCE = 0.003


def model_spec(run: ReleasedRun) -> ModelSpec:
    """The ``released`` model spec of a released run: its outputs are read, not generated."""
    return ModelSpec(
        backend="released",
        model=run.info.stem,
        revision=study_outputs.COMMIT,
        text=f"released:{run.info.stem}@{study_outputs.COMMIT}",
    )


def reference_data(data_path: str | Path | None = None):
    """MTS-Dialog with TestSet-1 then TestSet-2 as its test split (400 items, in file order): the items the
    released arrays answer. A copy that does not hold exactly those 400 items is refused."""
    data = get_task("summarization").load(Source.LOCAL, path=data_path, test_set="both")
    test = data.splits["test"]
    if len(test) != study_outputs.ITEMS:
        raise InvalidParameter(
            f"the MTS-Dialog test split here has {len(test)} items, not the {study_outputs.ITEMS} the released "
            f"outputs answer (malformed rows: {data.malformed.as_dict()}); use the registry's release files"
        )
    return data


def record_released_runs(
    output_dir: str | Path = "runs/study_outputs",
    *,
    runs: str | Iterable[str] | None = None,
    outputs_path: str | Path | None = None,
    data_path: str | Path | None = None,
    bertscore_model: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """One run record per released run (``runs``: file stems, default all 32) under ``output_dir``; returns the
    tidy metrics table of those records (:func:`labscale.records.metrics_table`).

    Parameters are checked before any file is read; the released files are verified against the registry's sha256
    (``outputs_path``: a folder of them instead of the registry's copy), and the references come from the
    MTS-Dialog release files (``data_path``, default the registry's). ``bertscore_model`` is the BERTScore encoder
    (None: the offline all-MiniLM-L6-v2; the study's was ``distilbert-base-uncased``). A record is reused when
    nothing it depends on changed."""
    stems = study_outputs.check_stems(runs)
    check_range("n_resamples", n_resamples, 100, 100_000, integer=True)
    if bertscore_model is not None and (not isinstance(bertscore_model, str) or not bertscore_model.strip()):
        raise InvalidParameter(f"bertscore_model must be a model name or path, got {bertscore_model!r}")
    released = study_outputs.load_runs(stems, path=outputs_path)
    data = reference_data(data_path)
    items = data.splits["test"]
    references = [str(ex.target) for ex in items]
    output_dir = Path(output_dir)
    task_options = {"test_set": "both", **({"bertscore_model": bertscore_model} if bertscore_model else {})}
    inputs = (data.content_hash, [ex.id for ex in items])
    specs = [
        RunSpec(
            experiment=EXPERIMENT,
            model=model_spec(run),
            label=run.info.model,
            task="summarization",
            source=Source.LOCAL.value,
            scenario=run.info.scenario,
            shots=run.info.shots,
            seed=seed,
            n_resamples=n_resamples,
            data={"task_options": task_options, "data_path": data_path, "split": "test", "data_seed": 0},
            settings={"released": {"stem": run.info.stem, "group": run.info.group, "step": run.info.step}},
        )
        for run in released
    ]
    # the BERTScore pairs of every run whose record must be (re)written, in a few large calls: the 400 references
    # are encoded once per call, not once per run; current records need no scoring at all
    pairs = list(zip(released, specs, strict=True))
    stale = [run for run, spec in pairs if not is_current(output_dir / spec.name, spec.key(run.identity, *inputs))]
    prefetch_bertscore(references, [run.summaries for run in stale], bertscore_model=bertscore_model, progress=progress)
    written = []
    for run, spec in progress_bars.bar(pairs, desc="released runs", unit="run", disable=not progress):

        def produce(run: ReleasedRun = run) -> Produced:
            scores, encoder = summary_item_scores(references, run.summaries, bertscore_model=bertscore_model)
            metrics = summary_metrics_from_items(scores, encoder, n_resamples=n_resamples, seed=seed)
            predictions = [
                {
                    "id": ex.id,
                    "target": ex.target,
                    "reply": text,
                    "parsed": text if text.strip() else INVALID,
                    "invalid": not text.strip(),
                    "scores": {name: np.asarray(values[i]).tolist() for name, values in scores.items()},
                    "kind": ex.meta["kind"],
                }
                for i, (ex, text) in enumerate(zip(items, run.summaries, strict=True))
            ]
            provenance = {
                "data": data.provenance(),
                "released": {**run.identity, "authors_metrics": run.authors_metrics},
            }
            return Produced(predictions, metrics, provenance)

        written.append(execute(spec, output_dir / spec.name, produce, identity=run.identity, inputs=inputs))
    table = records.metrics_table(output_dir)
    return table[table["run"].isin({str(p) for p in written})].reset_index(drop=True)


def _published_table2() -> pd.DataFrame:
    """The study's Table 2 summarization values: (model, scenario) -> bleu, bertscore_f1."""
    from .report import study_table2

    tidy = study_table2()
    tidy = tidy[tidy["task"] == "summarization"]
    return tidy.pivot_table(index=["model", "scenario"], columns="metric", values="value")


def reproduction_table(table: pd.DataFrame) -> pd.DataFrame:
    """Our recomputation beside the authors' metric file for every released run in ``table`` (a metrics table of
    :func:`record_released_runs`), and beside the study's Table 2 where it prints the run: BLEU (HF ``evaluate``'s,
    with brevity penalty and token lengths), ROUGE-1/2/L and BERTScore F1 (ours with the encoder named in
    ``encoder``; the authors' with ``distilbert-base-uncased``), with ``bleu_ok`` / ``rouge_ok`` flags."""
    published = _published_table2()
    rows = []
    for run in table["run"].drop_duplicates():
        record = records.read_run(run)
        params, manifest = record["params"], record["manifest"]
        authors = manifest["released"]["authors_metrics"]
        stats = np.array([s["bleu_stats"] for s in record["predictions"]["scores"]])
        ours = hf_bleu(stats)
        metrics = record["metrics"]
        row: dict[str, Any] = {
            "run": params["released"]["stem"],
            "model": params["model"],
            "scenario": params["scenario"],
            "bleu": ours["bleu"],
            "bleu_authors": authors["bleu"]["bleu"],
            "brevity_penalty": ours["brevity_penalty"],
            "brevity_penalty_authors": authors["bleu"]["brevity_penalty"],
            "summary_tokens": ours["translation_length"],
            "summary_tokens_authors": authors["bleu"]["translation_length"],
            "reference_tokens": ours["reference_length"],
            "reference_tokens_authors": authors["bleu"]["reference_length"],
        }
        for rouge in ("rouge1", "rouge2", "rougeL"):
            row[rouge] = metrics[rouge]["value"]
            row[f"{rouge}_authors"] = authors["rouge"][rouge]
        row["bertscore_f1"] = metrics["bertscore_f1"]["value"]
        row["bertscore_f1_authors"] = authors["bertscore"]["f1"]
        row["encoder"] = metrics["bertscore_f1"].get("encoder")
        key = (params["model"], params["scenario"])
        in_table2 = params["released"]["group"] == "main" and key in published.index
        row["bleu_table2"] = published.loc[key, "bleu"] if in_table2 else np.nan
        row["bertscore_f1_table2"] = published.loc[key, "bertscore_f1"] if in_table2 else np.nan
        row["bleu_ok"] = bool(
            abs(row["bleu"] - row["bleu_authors"]) <= BLEU_TOLERANCE
            and abs(row["brevity_penalty"] - row["brevity_penalty_authors"]) <= BLEU_TOLERANCE
            and row["summary_tokens"] == row["summary_tokens_authors"]
            and row["reference_tokens"] == row["reference_tokens_authors"]
        )
        row["rouge_ok"] = all(
            abs(row[r] - row[f"{r}_authors"]) <= ROUGE_TOLERANCE for r in ("rouge1", "rouge2", "rougeL")
        )
        rows.append(row)
    return pd.DataFrame(rows)


def encoder_agreement(repro: pd.DataFrame) -> dict[str, Any]:
    """How alike our BERTScore encoder and the study's rank the runs of ``repro`` (:func:`reproduction_table`):
    Spearman's rho between our BERTScore-F1 and the authors' over runs, with the Fisher-z 95 % interval using
    Bonett and Wright's standard error ``sqrt((1 + rho^2 / 2) / (n - 3))`` (the authors' files hold run-level values
    only, so items cannot be resampled)."""
    from scipy.stats import norm, spearmanr

    from .metrics import metric

    n = len(repro)
    if n < 4:
        raise InvalidParameter(f"rank agreement needs at least 4 runs, got {n}")
    rho = float(spearmanr(repro["bertscore_f1"], repro["bertscore_f1_authors"]).statistic)
    z, half = np.arctanh(min(rho, 1 - 1e-12)), norm.ppf(0.975) * np.sqrt((1 + rho**2 / 2) / (n - 3))
    return metric(
        rho,
        float(np.tanh(z - half)),
        float(np.tanh(z + half)),
        n,
        interval="fisher-z (Bonett-Wright)",
        ours=str(repro["encoder"].iloc[0]),
        theirs="distilbert-base-uncased",
    )


#: the study's summarization conclusions (Table 2, Fig. 2 and the cross-evaluation runs), by comparison family
CLAIMS = {
    "fine-tuned open vs GPT-4 few-shot": "fine-tuned open models are competitive with few-shot GPT-4-Turbo",
    "k-shot vs 0-shot": "few-shot prompting often hurts the open models",
    "fine-tuned vs 0-shot": "fine-tuning improves on the zero-shot model",
    "fine-tuned GPT-3.5 vs the rest": "fine-tuned GPT-3.5-Turbo has the best BERTScore-F1 (0.85)",
    "fine-tuned Mistral vs the rest": "fine-tuned Mistral has the best BLEU (0.10)",
    "checkpoint vs previous": "the fine-tune is near its best after 20 % of the data (Fig. 2)",
    "cross-task adapter vs plain Llama-2": "an adapter trained on another task carries over to summarization",
}
OPEN_MODELS = ("mistral-7b-instruct", "llama-2-7b-chat", "falcon-7b-instruct")


def study_claims(scores) -> list[tuple[str, str, str]]:
    """The ``(family, condition, baseline)`` run pairs that test each of :data:`CLAIMS` on the released runs in
    ``scores`` (a :class:`~labscale.summary_scores.SummaryScores`); pairs whose runs are absent are left out."""
    have = set(scores.labels)
    runs = scores.runs
    main = runs[runs["group"] == "main"]
    models = list(dict.fromkeys(main["model"]))
    pairs: list[tuple[str, str, str]] = []
    for model in OPEN_MODELS:
        pairs += [
            ("fine-tuned open vs GPT-4 few-shot", f"{model} fine-tuned", f"gpt-4-turbo {k}-shot") for k in (1, 2, 3)
        ]
    for model in models:
        pairs += [("k-shot vs 0-shot", f"{model} {k}-shot", f"{model} 0-shot") for k in (1, 2, 3)]
    for model in models:
        pairs.append(("fine-tuned vs 0-shot", f"{model} fine-tuned", f"{model} 0-shot"))
    for best, family in (
        ("gpt-3.5-turbo", "fine-tuned GPT-3.5 vs the rest"),
        ("mistral-7b-instruct", "fine-tuned Mistral vs the rest"),
    ):
        pairs += [(family, f"{best} fine-tuned", other) for other in main["label"] if other != f"{best} fine-tuned"]
    checkpoints = runs[runs["group"] == "checkpoint"].sort_values("step")["label"].tolist()
    pairs += [("checkpoint vs previous", later, earlier) for earlier, later in itertools.pairwise(checkpoints)]
    cross = runs[runs["group"] == "cross-task"]
    pairs += [
        ("cross-task adapter vs plain Llama-2", label, f"llama-2-7b-chat {scenario}")
        for label, scenario in zip(cross["label"], cross["scenario"], strict=True)
    ]
    return [p for p in pairs if p[1] in have and p[2] in have]


#: training samples per optimizer step of the released summarization fine-tune: 1,201 training dialogues in one
#: epoch of about 300 steps (study §5.2), so checkpoint-60 has seen about 240 samples (20 %, as in Fig. 2)
SAMPLES_PER_STEP = 4
#: MTS-Dialog training dialogues: Fig. 2's percentages are of these
TRAINING_DIALOGUES = 1201


def checkpoint_curve(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The released checkpoints of ``table`` (a metrics table of :func:`record_released_runs`) as a learning curve
    (model, metric, value, ci_low, ci_high, step, samples: :data:`SAMPLES_PER_STEP` per step), and the study's
    Fig. 2 summarization curve beside the checkpoints' BERTScore-F1 from the authors' own metric files (model,
    x = samples, value; reference values, cited, with the study's encoder)."""
    from .sweep import study_fig2

    steps, authors = {}, []
    for run in table["run"].drop_duplicates():
        record = records.read_run(run)
        released = record["params"].get("released") or {}
        if released.get("group") == "checkpoint":
            steps[run] = released["step"]
            value = record["manifest"]["released"]["authors_metrics"]["bertscore"]["f1"]
            authors.append(
                {"model": "the checkpoints' own metric files", "x": released["step"] * SAMPLES_PER_STEP, "value": value}
            )
    curve = table[table["run"].isin(steps)].copy()
    curve["step"] = curve["run"].map(steps)
    curve["samples"] = curve["step"] * SAMPLES_PER_STEP
    curve["model"] = "released fine-tune checkpoints"
    fig2 = study_fig2("left")
    fig2 = fig2[fig2["task"] == "summarization"]
    study = pd.DataFrame(
        {
            "model": "llama-2-7b-chat (Fig. 2)",
            "x": (fig2["x"] * TRAINING_DIALOGUES / 100).round().astype(int),
            "value": fig2["value"],
        }
    )
    study = pd.concat([study, pd.DataFrame(authors, columns=["model", "x", "value"])], ignore_index=True)
    return curve.sort_values(["metric", "step"]).reset_index(drop=True), study.reset_index(drop=True)


def family_table(comparisons: pd.DataFrame, families: Iterable[str], digits: int = 3) -> pd.DataFrame:
    """The comparisons of the claim ``families`` (those present, in that order) as cells
    (:func:`labscale.report.comparison_table`), indexed by family, metric and comparison."""
    from .report import comparison_table

    families = [f for f in families if f in set(comparisons["family"])]
    rows = comparisons[comparisons["family"].isin(families)].copy()
    rows["_order"] = rows["family"].map({f: i for i, f in enumerate(families)})
    rows = rows.sort_values("_order", kind="stable").drop(columns="_order").assign(model=lambda f: f["family"])
    return comparison_table(rows, digits=digits).droplevel("task").rename_axis(index={"model": "claim family"})


def claim_summary(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per claim family and metric: how many paired comparisons favour the condition, the baseline, or neither
    (Holm-adjusted p < 0.05 within the family; :func:`labscale.summary_analysis.verdict`), beside the claim it tests
    (:data:`CLAIMS`)."""
    from .summary_analysis import BASELINE_BETTER, CONDITION_BETTER, NO_CLEAR_DIFFERENCE, verdict

    verdicts = [verdict(d, p) for d, p in zip(comparisons["delta"], comparisons["p_holm"], strict=True)]
    columns = [CONDITION_BETTER, BASELINE_BETTER, NO_CLEAR_DIFFERENCE]
    out = (
        comparisons.assign(verdict=verdicts)
        .groupby(["family", "metric"], sort=False)["verdict"]
        .value_counts()
        .unstack(fill_value=0)
        .reindex(columns=columns, fill_value=0)
        .reset_index()
        .rename_axis(columns=None)
    )
    out.insert(1, "claim", out["family"].map(CLAIMS))
    out.insert(3, "comparisons", out[columns].sum(axis=1))
    return out


__all__ = [
    "BLEU_TOLERANCE",
    "EXPERIMENT",
    "ROUGE_TOLERANCE",
    "model_spec",
    "record_released_runs",
    "reproduction_table",
]
