"""End to end: the structured-tasks chapter through papermill on the real Spider and ViGGO release files, the embedded
model at zero shots, and a tiny CPU LoRA adapter for text-to-SQL."""

from __future__ import annotations

import json

import pytest

from labscale.book import execute_chapter
from labscale.records import find_runs
from notebook_outputs import executed_outputs

pytestmark = pytest.mark.slow


def test_structured_notebook_runs_end_to_end(embedded_model_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    out, adapters = tmp_path / "structured", tmp_path / "adapters"
    executed = execute_chapter(
        "structured",
        output=tmp_path / "book" / "chapters" / "structured.ipynb",
        parameters={
            "tasks": ["text_to_sql", "viggo"],
            "shots": [0],
            "limit": 3,
            "finetune_tasks": ["text_to_sql"],
            "finetune_examples": 8,
            "finetune_options": {"top_layers": 2, "epochs": 1},
            "adapter_root": str(adapters),
            "max_new_tokens": {"text_to_sql": 24, "viggo": 24},
            "n_resamples": 200,
            "output_dir": str(out),
        },
    )
    outputs, text = executed_outputs(executed)
    assert [o for o in outputs if o.output_type == "error"] == []
    runs = find_runs(out)
    # two tasks at zero shots, and the text-to-SQL adapter evaluated zero-shot
    assert len(runs) == 3
    scenarios = sorted(json.loads((r / "params.json").read_text())["scenario"] for r in runs)
    assert scenarios == ["0-shot", "0-shot", "fine-tuned"]
    card = json.loads(next(adapters.rglob("labscale_card.json")).read_text())
    assert card["task"] == "text_to_sql"
    # the prompt preview is the companion study's prompt
    assert "You are a powerful text-to-SQL model." in text and "### Response:" in text
    # the companion study's costs and what follows from them
    assert "$3.32" in text and "$26.05" in text
    # the GPT-3.5 estimate is for the local SQL train split (563 Spider dev questions)
    assert "563" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # regimes, cost-quality
