"""End to end: the domain-adaptation chapter (evaluation, a tiny fine-tune, its learning curve) and the cost chapter
executed by papermill on the embedded model, then rendered."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from labscale.book import build_html, execute_chapter
from labscale.config import PROJECT_ROOT
from labscale.records import find_runs
from notebook_outputs import TINY_FINETUNE, raw_dumps

pytestmark = pytest.mark.slow


def test_domain_adaptation_notebook_runs_and_renders(embedded_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    runs, adapters = tmp_path / "runs", tmp_path / "adapters"
    executed = execute_chapter(
        "domain_adaptation",
        output=tmp_path / "book" / "chapters" / "domain_adaptation.ipynb",
        parameters={
            "limit": 3,
            "shots": [0, 2],
            "output_dir": str(runs),
            "n_resamples": 200,
            "seed": 5,
            "max_new_tokens": {"summarization": 24},
            "adapter_root": str(adapters),
            "finetune_options": TINY_FINETUNE,  # a fine-tune of 4 steps inside the test
        },
    )

    nb = nbformat.read(executed, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert ["parameters"] in tags and ["injected-parameters"] in tags
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    assert raw_dumps([o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]) == []
    html_outputs = "".join(
        o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "Wolfe et al. 2024, Table 2" in html_outputs and "bertscore_f1" in html_outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))

    assert "step 2" in html_outputs and "fine-tuned" in html_outputs  # the learning-curve table, the FT rows
    assert "max_steps = examples" in html_outputs  # the study's epoch arithmetic, explained
    records = find_runs(runs)
    assert len(records) == 7  # 1 model x 3 tasks x 2 shot counts, and the fact-checking adapter
    tuned = [r for r in records if r.name == "finetuned"]
    assert len(tuned) == 1 and tuned[0].parent.name == "fact_checking"
    card = json.loads((adapters / "smollm2-135m" / "fact_checking" / "adapter" / "labscale_card.json").read_text())
    assert card["steps"]["optimizer_steps"] == 4 and card["lora"]["layers"] == [28, 29]
    curve = find_runs(tmp_path / "runs_learning_curve")
    assert sorted(r.parent.parent.parent.name for r in curve) == ["samples-000000", "samples-000004", "samples-000008"]
    params = json.loads((records[0] / "params.json").read_text())
    assert params["limit"] == 3 and params["seed"] == 5 and params["shots"] in (0, 2)
    manifest = json.loads((records[0] / "manifest.json").read_text())
    assert manifest["items"] == 3 and manifest["model"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"

    costed = execute_chapter(
        "cost",
        output=tmp_path / "book" / "chapters" / "cost.ipynb",
        parameters={"runs_root": str(runs), "finetune_records": [str(adapters)]},
    )
    nb = nbformat.read(costed, as_version=4)
    assert [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ] == []
    text = "".join(
        o.get("data", {}).get("text/plain", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "fine-tuning" in text and "gcp-t4-spot" in text and "Wolfe et al. 2024" in text

    # render exactly these executed notebooks with the project's book configuration
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    for name in ("intro.md", "rerun.md", "references.md", "references.bib"):
        shutil.copy(PROJECT_ROOT / "book" / name, tmp_path / "book" / name)
    html = build_html(tmp_path)
    page = (html / "book" / "chapters" / "domain_adaptation.html").read_text()
    assert "Domain adaptation" in page and "Wolfe et al. 2024, Table 2" in page
    assert (html / "index.html").is_file()
    cost_page = (html / "book" / "chapters" / "cost.html").read_text()
    assert "Table 3" in cost_page and "Pareto" in cost_page
