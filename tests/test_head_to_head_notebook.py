"""End to end: the head-to-head chapter through papermill, on four of the study's released runs, the embedded model
as a (small) LLM judge, this book's runs judged by gold labels, and a tiny prompt-format sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from labscale.book import execute_chapter
from labscale.records import find_runs
from notebook_outputs import TINY_FINETUNE, executed_outputs

pytestmark = pytest.mark.slow

RUNS = [
    "gpt35_zeroshot_outputs",
    "gpt4_zeroshot_outputs",
    "mistral_finetuned_model_zeroshot_outputs",
    "llama-2_pretrained_model_zeroshot_outputs",
]


def test_head_to_head_notebook_runs_end_to_end(embedded_model_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    out = tmp_path / "h2h"
    executed = execute_chapter(
        "head_to_head",
        output=tmp_path / "book" / "chapters" / "head_to_head.ipynb",
        parameters={
            "released_runs": RUNS,
            "released_dir": str(tmp_path / "released"),
            "judge_items": 1,
            "judge_max_new_tokens": 8,
            "gold_tasks": ["fact_checking"],
            "shots": [0, 1],
            "limit": 4,
            "domain_dir": str(tmp_path / "domain"),
            "adapter_root": str(tmp_path / "adapters"),
            "finetune_options": TINY_FINETUNE,  # a fine-tune of 4 steps inside the test
            "format_shots": [0, 1],
            "format_limit": 3,
            "sheet_items": 2,
            "n_resamples": 200,
            "output_dir": str(out),
        },
    )
    outputs, text = executed_outputs(executed)
    assert [o for o in outputs if o.output_type == "error"] == []
    assert "2,400 battles: 4 runs, 400 dialogues" in text  # 6 pairs x 400 dialogues
    assert "judge llm:" in text and ("reliable" in text or "UNRELIABLE" in text)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # ratings, heatmaps, reliability
    # the judge's judgments, this book's runs and the format sweep are run records
    assert len(find_runs(out / "judge")) == 1
    # fact-checking at 0 and 1 shots, and the adapter zero-shot: three contestants rated by gold labels
    assert len(find_runs(tmp_path / "domain")) == 3
    assert "smollm2-135m fine-tuned" in text  # rated beside "smollm2-135m 0-shot" and "1-shot"
    assert len(find_runs(out / "formats")) == 8 * 2  # eight formats x two shot counts
    sheet = pd.read_csv(out / "annotation_sheet.csv")
    assert len(sheet) == 2 and sheet["verdict"].isna().all()  # blinded pairs, verdicts left to the annotators
    assert (out / "annotation_sheet.key.csv").is_file()
