"""End to end: the privacy chapter (DP fine-tunes, utility at each epsilon, leakage audit) executed by papermill on
the embedded model at a tiny size."""

from __future__ import annotations

import json

import nbformat
import pytest

from labscale.book import execute_chapter
from labscale.records import find_runs

pytestmark = pytest.mark.slow


def test_privacy_notebook_runs(embedded_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    runs, adapters = tmp_path / "runs" / "privacy", tmp_path / "adapters"
    executed = execute_chapter(
        "privacy",
        output=tmp_path / "book" / "chapters" / "privacy.ipynb",
        parameters={
            "epsilons": [4, "inf"],
            "limit": 4,
            "n_resamples": 100,
            "n_candidates": 12,
            "canary_repetitions": [1, 2],
            "canary_digits": 4,
            "output_dir": str(runs),
            "adapter_root": str(adapters),
            "finetune_options": {
                "train_fraction": 8 / 400,
                "per_device_batch_size": 4,
                "epochs": 1,
                "top_layers": 2,
                "r": 4,
                "alpha": 8,
                "max_length": 256,
                "completion_only_loss": False,
                "warmup_steps": 1,
            },
        },
    )
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "Wolfe et al. 2024, Table 4" in html and "eps=4" in html and "exposure" in html
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # loss, utility, leakage

    utility = find_runs(runs)
    assert sorted(r.relative_to(runs).parts[0] for r in utility) == ["base", "eps-4", "eps-inf"]
    card = json.loads((adapters / "smollm2-135m" / "medqa_tf" / "eps=4" / "adapter" / "labscale_card.json").read_text())
    assert card["privacy"]["epsilon_target"] == 4 and card["privacy"]["noise_multiplier"] > 0
    assert card["data"]["canary_rows"] == 3
    audit = find_runs(tmp_path / "runs" / "privacy_audit")
    assert sorted(r.name for r in audit) == ["base", "eps-4", "eps-inf"]
