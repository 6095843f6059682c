"""End to end: the domain-adaptation notebook executed by papermill on the embedded model, then rendered."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from labscale.book import build_html, execute_chapter
from labscale.config import PROJECT_ROOT
from labscale.records import find_runs

pytestmark = pytest.mark.slow


def test_domain_adaptation_notebook_runs_and_renders(embedded_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    runs = tmp_path / "runs"
    executed = execute_chapter(
        "domain_adaptation", output=tmp_path / "book" / "chapters" / "domain_adaptation.ipynb",
        parameters={"limit": 3, "shots": [0, 2], "output_dir": str(runs), "n_resamples": 200, "seed": 5,
                    "max_new_tokens": {"summarization": 24}})

    nb = nbformat.read(executed, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert ["parameters"] in tags and ["injected-parameters"] in tags
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    html_outputs = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                           for o in c.get("outputs", []))
    assert "Wolfe et al. 2024, Table 2" in html_outputs and "bertscore_f1" in html_outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))

    records = find_runs(runs)
    assert len(records) == 6  # 1 model x 3 tasks x 2 shot counts
    params = json.loads((records[0] / "params.json").read_text())
    assert params["limit"] == 3 and params["seed"] == 5 and params["shots"] in (0, 2)
    manifest = json.loads((records[0] / "manifest.json").read_text())
    assert manifest["items"] == 3 and manifest["model"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"

    # render exactly this executed notebook with the project's book configuration
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    for name in ("intro.md", "rerun.md"):
        shutil.copy(PROJECT_ROOT / "book" / name, tmp_path / "book" / name)
    html = build_html(tmp_path)
    page = (html / "book" / "chapters" / "domain_adaptation.html").read_text()
    assert "Domain adaptation" in page and "Wolfe et al. 2024, Table 2" in page
    assert (html / "index.html").is_file()
