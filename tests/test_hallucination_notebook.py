"""End to end: the hallucination chapter executed by papermill on the embedded model with a tiny fine-tune."""

from __future__ import annotations

import json

import nbformat
import pytest

from labscale.book import execute_chapter
from labscale.records import find_runs

pytestmark = pytest.mark.slow


def test_hallucination_notebook_runs(embedded_model_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    runs, adapters = tmp_path / "runs", tmp_path / "adapters"
    executed = execute_chapter(
        "hallucination",
        output=tmp_path / "book" / "chapters" / "hallucination.ipynb",
        parameters={
            "limit": 4,
            "shots": [0, 1],
            "squad_limit": 4,
            "truthfulqa_limit": 3,
            "n_resamples": 200,
            "seed": 3,
            "max_new_tokens": {"qasper": 8, "squad_v2": 8},
            "output_dir": str(runs),
            "adapter_root": str(adapters),
            # 8 examples, batch 4 -> 2 steps, LoRA on the top 2 layers
            "finetune_options": {
                "train_fraction": 8 / 600,
                "top_layers": 2,
                "r": 4,
                "alpha": 8,
                "max_length": 320,
                "warmup_steps": 1,
            },
        },
    )

    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = html + "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    assert "Wolfe et al. 2024, Table 6" in html and "Wolfe et al. 2024, Table 7" in html
    assert "answer_f1" in html and "NoAns_exact" in html and "MC2" in html and "aurc" in html
    assert "TruthfulQA: 817 questions" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the QASPER panels, the risk-coverage curve

    records = find_runs(runs)
    names = sorted(str(r.relative_to(runs)) for r in records)
    assert names == [
        "smollm2-135m/qasper/0shot",
        "smollm2-135m/qasper/1shot",
        "smollm2-135m/qasper/finetuned",
        "smollm2-135m/squad_v2/0shot",
        "smollm2-135m/truthfulqa_mc/0shot",
    ]
    no_context = sorted(
        str(r.relative_to(tmp_path / "runs_no_context")) for r in find_runs(tmp_path / "runs_no_context")
    )
    assert no_context == ["smollm2-135m/qasper/0shot", "smollm2-135m/qasper/finetuned"]
    params = json.loads(
        (tmp_path / "runs_no_context" / "smollm2-135m" / "qasper" / "0shot" / "params.json").read_text()
    )
    assert params["task_options"] == {"context": False} and params["limit"] == 4 and params["seed"] == 3
    metrics = json.loads(
        (tmp_path / "runs_no_context" / "smollm2-135m" / "qasper" / "finetuned" / "metrics.json").read_text()
    )
    assert 0 <= metrics["abstention_rate"]["value"] <= 1 and metrics["abstention_rate"]["n"] == 4
    prompt = json.loads(
        (tmp_path / "runs_no_context" / "smollm2-135m" / "qasper" / "0shot" / "manifest.json").read_text()
    )["example_messages"][-1]["content"]
    assert "## Documents" not in prompt and prompt.endswith("## Answer:")
    preds = [
        json.loads(line)
        for line in (runs / "smollm2-135m" / "qasper" / "0shot" / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(preds) == 4 and all(isinstance(p["logprob"], float) for p in preds)
    tqa = json.loads((runs / "smollm2-135m" / "truthfulqa_mc" / "0shot" / "metrics.json").read_text())
    assert 0 < tqa["mc2"]["value"] < 1 and tqa["mc2"]["n"] == 3
    card = json.loads((adapters / "smollm2-135m" / "qasper" / "adapter" / "labscale_card.json").read_text())
    assert card["steps"]["optimizer_steps"] == 2
