"""End to end: the bias chapter (toxicity at 0 and 2 shots, a tiny fine-tune, BBQ) executed by papermill on the
embedded model."""

from __future__ import annotations

import json

import nbformat
import pytest

from labscale.book import execute_chapter
from labscale.records import find_runs

pytestmark = pytest.mark.slow


def test_bias_notebook_runs(embedded_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    runs, adapters = tmp_path / "runs", tmp_path / "adapters"
    executed = execute_chapter(
        "bias",
        output=tmp_path / "book" / "chapters" / "bias.ipynb",
        parameters={
            "limit": 8,
            "shots": [0, 2],
            "bbq_limit": 8,
            "output_dir": str(runs),
            "n_resamples": 200,
            "seed": 3,
            "adapter_root": str(adapters),
            # 8 comments, batch 4 -> 2 optimizer steps, LoRA on the top layer only
            "finetune_options": {
                "train_fraction": 0.01,
                "top_layers": 1,
                "r": 4,
                "alpha": 8,
                "max_length": 160,
                "warmup_steps": 0,
            },
        },
    )

    nb = nbformat.read(executed, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert ["parameters"] in tags and ["injected-parameters"] in tags
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    html = "".join(
        o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "Wolfe et al. 2024, Table 5" in html and "this book (run records)" in html
    assert "worst_group_accuracy" in html and "female_nontoxic" in html and "bias_score_ambig" in html
    assert "study's substring rule" in html  # the same replies rescored by the original parser
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # worst-group vs mean, BBQ scores

    records = find_runs(runs)
    layout = sorted((r.parent.name, r.name) for r in records)
    assert layout == [("bbq", "0shot"), ("toxicity", "0shot"), ("toxicity", "2shot"), ("toxicity", "finetuned")]
    for record in records:
        params = json.loads((record / "params.json").read_text())
        assert params["seed"] == 3 and params["source"] == "offline"
        manifest = json.loads((record / "manifest.json").read_text())
        assert manifest["items"] == 8 and manifest["data"]["synthetic"] is True
        metrics = json.loads((record / "metrics.json").read_text())
        if params["task"] == "toxicity":
            assert {"worst_group_accuracy", "accuracy", "f1", "invalid_rate", "acc_male_toxic"} <= set(metrics)
            worst = metrics["worst_group_accuracy"]
            cells = [metrics[f"acc_{c}"] for c in ("male_toxic", "male_nontoxic", "female_toxic", "female_nontoxic")]
            assert worst["value"] == min(c["value"] for c in cells if c["n"])
            assert sum(c["n"] for c in cells) == 8
        else:
            assert {"accuracy_ambig", "bias_score_ambig", "bias_score_disambig"} <= set(metrics)
            assert metrics["accuracy_ambig"]["n"] + metrics["accuracy_disambig"]["n"] == 8
        predictions = [json.loads(line) for line in (record / "predictions.jsonl").read_text().splitlines()]
        assert all("kind" in p for p in predictions)
    card = json.loads((adapters / "smollm2-135m" / "toxicity" / "adapter" / "labscale_card.json").read_text())
    assert card["steps"]["optimizer_steps"] == 2 and card["lora"]["layers"] == [29]
