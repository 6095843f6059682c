"""End to end: the transparency chapter through papermill on the real FMTI files, the study's released summaries
re-scored into run records, and a card for a real adapter of the embedded model."""

from __future__ import annotations

import pytest

from labscale import released
from labscale.book import execute_chapter
from labscale.finetune import FinetuneConfig, finetune
from labscale.runner import plan_experiment, run_experiment
from notebook_outputs import executed_outputs

pytestmark = pytest.mark.slow

RELEASED = [
    "gpt4_zeroshot_outputs",
    "mistral_finetuned_model_zeroshot_outputs",
    "falcon_pretrained_model_zeroshot_outputs",
]


def test_transparency_notebook_runs_end_to_end(embedded_model_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    released_root = tmp_path / "study_outputs"
    released.record_released_runs(released_root, runs=RELEASED, n_resamples=200, progress=False)
    config = FinetuneConfig.preset("cpu", train_fraction=0.01, per_device_batch_size=2, max_length=256, top_layers=2)
    adapter = finetune("smollm2-135m", "fact_checking", config=config, output_dir=tmp_path / "adapters" / "fc")
    plan = plan_experiment(
        ["smollm2-135m"],
        ["fact_checking"],
        [],
        adapters={"fact_checking": adapter.adapter_dir},
        limit=3,
        max_new_tokens={"fact_checking": 4},
        n_resamples=200,
        output_dir=tmp_path / "runs" / "eval",
    )
    run_experiment(plan, progress=False)
    executed = execute_chapter(
        "transparency",
        output=tmp_path / "book" / "chapters" / "transparency.ipynb",
        parameters={
            "released_root": str(released_root),
            "adapter_root": str(tmp_path / "adapters"),
            "runs_root": str(tmp_path / "runs"),
        },
    )
    outputs, text = executed_outputs(executed)
    assert [o for o in outputs if o.output_type == "error"] == []
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # heatmap, change, transparency vs quality
    # Meta's totals reproduced from the indicator rows, and the unscored models said to be unscored
    assert "54" in text and "60" in text
    assert "not assessed: TII" in text and "not assessed: GPT-3.5" in text
    # the adapter's card, marked as a self-assessment, with its evaluation run
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "not an FMTI score" in markdown and "fact_checking" in text
