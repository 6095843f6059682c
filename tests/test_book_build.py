"""The book build's closing summary: per chapter, the seconds, the run records written, their model calls and cache
hits, read from the records a real run of the embedded model writes."""

from __future__ import annotations

import time

import pytest

from labscale import book
from labscale.cache import ResponseCache
from labscale.runner import plan_experiment, run_experiment


def test_build_activity_counts_the_records_a_step_wrote(embedded_model_dir, tmp_path):
    runs = tmp_path / "runs"
    cache = ResponseCache(tmp_path / "responses.sqlite")
    options = {"output_dir": runs, "cache": cache, "max_new_tokens": {"fact_checking": 4}}
    plan = plan_experiment(["smollm2-135m"], ["fact_checking"], [0], limit=2, **options)
    before = time.time() - 1
    run_experiment(plan, progress=False)
    assert book.build_activity(before, runs) == {"records written": 1, "model calls": 2, "cache hits": 0}
    # the record rebuilt from the response cache: no model call, two cache hits
    again = time.time()
    time.sleep(0.01)
    run_experiment(plan, reuse=False, progress=False)
    assert book.build_activity(again, runs) == {"records written": 1, "model calls": 0, "cache hits": 2}
    # a record reused as it is is not rewritten, so a later step sees nothing
    later = time.time() + 1
    assert book.build_activity(later, runs) == {"records written": 0, "model calls": 0, "cache hits": 0}
    assert book.build_activity(before, tmp_path / "nowhere")["records written"] == 0


def test_summary_table_totals_and_placeholders():
    rows = [
        {"chapter": "domain_adaptation", "seconds": 12.5, "records written": 3, "model calls": 40, "cache hits": 20},
        {"chapter": "structured", "seconds": 2.0, "note": "placeholder: data missing"},
        {"chapter": "HTML (Jupyter Book)", "seconds": 80.0},
    ]
    lines = book.summary_table(rows).splitlines()
    assert lines[0].split() == ["chapter", "seconds", "records", "written", "model", "calls", "cache", "hits"]
    assert lines[1].split() == ["domain_adaptation", "12.5", "3", "40", "20"]
    assert lines[2].split() == ["structured", "2.0", "–", "–", "–", "(placeholder:", "data", "missing)"]
    assert lines[-1].split() == ["total", "94.5", "3", "40", "20"]


def test_book_command_ends_with_the_summary(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(book, "missing_data", lambda name, parameters=None: ["fmti"])
    monkeypatch.setattr(book, "placeholder_chapter", lambda name, missing: tmp_path / f"{name}.ipynb")
    monkeypatch.setattr(book, "execute_chapter", lambda *a, **k: pytest.fail("the chapter must not run"))
    assert book.main(["--chapter", "transparency", "--no-html"]) == 0
    out = capsys.readouterr().out
    assert "chapter" in out and "model calls" in out and "transparency" in out and "placeholder" in out
    assert out.rstrip().splitlines()[-1].startswith("book built in")
