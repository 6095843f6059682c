"""End to end: the released-outputs chapter through papermill, on a subset of the study's released runs and the
embedded model on two of the same dialogues."""

from __future__ import annotations

import nbformat
import pytest

from labscale.book import execute_chapter
from labscale.records import read_run
from notebook_outputs import executed_outputs

pytestmark = pytest.mark.slow

RUNS = [
    "mistral_pretrained_model_zeroshot_outputs",
    "mistral_pretrained_model_oneshot_outputs",
    "mistral_finetuned_model_zeroshot_outputs",
    "gpt4_threeshot_outputs",
    "gpt35_finetuned_zeroshot_outputs",
    "llama-2_pretrained_model_zeroshot_outputs",
    "checkpoint-60_finetuned_model_zeroshot_outputs",
    "checkpoint-120_finetuned_model_zeroshot_outputs",
    "Llama-2-7b-chat-hf_finetuned_model_zeroshot_outputs",
]


def test_study_outputs_notebook_runs_end_to_end(embedded_model_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    out = tmp_path / "runs"
    executed = execute_chapter(
        "study_outputs",
        output=tmp_path / "book" / "chapters" / "study_outputs.ipynb",
        parameters={"released_runs": RUNS, "limit": 2, "n_resamples": 200, "output_dir": str(out)},
    )
    outputs, text = executed_outputs(executed)
    assert [o for o in outputs if o.output_type == "error"] == []
    # the reproduction check, printed from the records: every chosen run reproduces the authors' BLEU and ROUGE
    assert (
        f"BLEU reproduces (4 decimals, brevity penalty and token lengths equal) for {len(RUNS)} of {len(RUNS)}" in text
    )
    assert f"ROUGE-1/2/L within 0.003 for {len(RUNS)} of {len(RUNS)}" in text
    assert "fine-tuned GPT-3.5-Turbo has the best BERTScore-F1" in text  # the claim summary names the claims
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # shots, length, agreement, checkpoints
    released = sorted(p for p in (out).rglob("manifest.json") if "ours" not in p.parts)
    assert len(released) == len(RUNS)
    ours = sorted((out / "ours").rglob("manifest.json"))
    assert len(ours) == 1
    record = read_run(ours[0].parent)
    assert record["params"]["model"] == "smollm2-135m" and len(record["predictions"]) == 2
    assert set(record["predictions"]["id"]) <= {
        read_run(p.parent)["predictions"]["id"].iloc[k] for p in released[:1] for k in range(400)
    }


def test_book_build_without_the_released_files_writes_an_honest_page(tmp_path, monkeypatch):
    from labscale import book
    from labscale.data import registry

    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    monkeypatch.delenv(registry.DATA_ENV, raising=False)
    monkeypatch.setenv("LABSCALE_HOME", str(tmp_path / "home"))
    assert book.missing_data("study_outputs") == ["study-outputs", "mts-dialog"]
    assert book.missing_data("study_outputs", {"outputs_path": "x"}) == []  # the user's own copy is not checked here
    assert book.missing_data("cost") == []
    page = book.placeholder_chapter("study_outputs", ["study-outputs", "mts-dialog"], output=tmp_path / "so.ipynb")
    text = nbformat.read(page, as_version=4).cells[0].source
    assert text.startswith("(study-outputs)=\n# The study's own summaries")  # the label other pages refer to
    assert "labscale-data fetch study-outputs mts-dialog" in text and "was not run in this build" in text
    # the book command writes that page instead of executing the chapter, and says so
    monkeypatch.setattr(book, "execute_chapter", lambda *a, **k: pytest.fail("the chapter must not run"))
    written = {}
    monkeypatch.setattr(book, "placeholder_chapter", lambda name, missing: written.setdefault(name, missing))
    assert book.main(["--chapter", "study_outputs", "--no-html"]) == 0
    assert written == {"study_outputs": ["study-outputs", "mts-dialog"]}
