"""The book build's closing summary: per chapter, the seconds, the run records written, their model calls and cache
hits, read from the records a real run of the embedded model writes."""

from __future__ import annotations

import time

import pytest

from labscale import book, released
from labscale.cache import ResponseCache
from labscale.config import PROJECT_ROOT
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


def test_fingerprint_follows_source_parameters_and_the_records_a_chapter_names(tmp_path):
    root = tmp_path
    (root / "notebooks").mkdir()
    (root / "notebooks" / "cost.md").write_text('runs_root = "runs/domain_adaptation"\n')
    run = root / "runs" / "domain_adaptation" / "m" / "fact_checking" / "0-shot"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    (root / "runs" / "bias").mkdir()
    first = book.chapter_fingerprint("cost", {}, root=root)
    assert book.chapter_fingerprint("cost", {}, root=root) == first
    # a folder the chapter does not name changes nothing
    (root / "runs" / "bias" / "manifest.json").write_text("{}")
    assert book.chapter_fingerprint("cost", {}, root=root) == first
    # a rewritten record, a derived sibling folder, a parameter and the source each change the fingerprint
    (run / "manifest.json").write_text('{"usage": {}}')
    second = book.chapter_fingerprint("cost", {}, root=root)
    assert second != first
    sibling = root / "runs" / "domain_adaptation_learning_curve" / "a"
    sibling.mkdir(parents=True)
    (sibling / "manifest.json").write_text("{}")
    third = book.chapter_fingerprint("cost", {}, root=root)
    assert third != second
    assert book.chapter_fingerprint("cost", {"gpu": "a40"}, root=root) != third
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = book.chapter_fingerprint("cost", {"runs_root": str(elsewhere)}, root=root)
    (elsewhere / "manifest.json").write_text("{}")
    assert book.chapter_fingerprint("cost", {"runs_root": str(elsewhere)}, root=root) != named
    (root / "notebooks" / "cost.md").write_text('runs_root = "runs/domain_adaptation"  # edited\n')
    assert book.chapter_fingerprint("cost", {}, root=root) != third


def test_a_build_restamps_the_chapters_it_ran_or_kept(tmp_path):
    """A card a later chapter wrote into a shared folder leaves an earlier chapter current after the build: its
    stored fingerprint becomes today's. A placeholder page and a notebook with no stamp are left alone."""
    import nbformat

    root = tmp_path
    (root / "notebooks").mkdir()
    for name in ("domain_adaptation", "bias", "structured"):
        (root / "notebooks" / f"{name}.md").write_text('adapter_root = "runs/adapters"\n')
    chapters = root / "book" / "chapters"
    chapters.mkdir(parents=True)
    (root / "runs" / "adapters" / "fact_checking").mkdir(parents=True)
    (root / "runs" / "adapters" / "fact_checking" / "labscale_card.json").write_text("{}")
    for name in ("domain_adaptation", "bias", "structured"):
        nbformat.write(nbformat.v4.new_notebook(), chapters / f"{name}.ipynb")
    stamped = book.chapter_fingerprint("domain_adaptation", {}, root=root)
    book.store_fingerprint(chapters / "domain_adaptation.ipynb", stamped)
    book.store_fingerprint(chapters / "structured.ipynb", "stale")
    # a later chapter's adapter lands in the same folder
    (root / "runs" / "adapters" / "toxicity").mkdir()
    (root / "runs" / "adapters" / "toxicity" / "labscale_card.json").write_text("{}")
    now = book.chapter_fingerprint("domain_adaptation", {}, root=root)
    assert now != stamped
    rows = [
        {"chapter": "domain_adaptation", "seconds": 1.0},
        {"chapter": "bias", "seconds": 1.0},  # executed notebook without a stamp: not touched
        {"chapter": "structured", "seconds": 1.0, "note": "placeholder: data missing"},
        {"chapter": "HTML (Jupyter Book)", "seconds": 1.0},
    ]
    assert book.restamp_fingerprints(rows, {}, root=root) == ["domain_adaptation"]
    assert book.stored_fingerprint(chapters / "domain_adaptation.ipynb") == now
    assert book.stored_fingerprint(chapters / "bias.ipynb") is None
    assert book.stored_fingerprint(chapters / "structured.ipynb") == "stale"
    assert book.restamp_fingerprints(rows, {}, root=root) == []  # nothing changed since


@pytest.mark.slow
def test_an_unchanged_chapter_is_kept_and_a_changed_one_executed(shared_data, tmp_path, monkeypatch, capsys):
    """The real transparency chapter (no model) built twice: the second build keeps the executed notebook; a new
    record in a folder it reads, or --force, executes it again."""
    monkeypatch.setattr(book, "PROJECT_ROOT", tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "transparency.md").write_text(
        (PROJECT_ROOT / book.CHAPTERS["transparency"]).read_text(encoding="utf-8")
    )
    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    released_root, adapters = tmp_path / "released", tmp_path / "adapters"
    released.record_released_runs(released_root, runs=["gpt4_zeroshot_outputs"], n_resamples=200, progress=False)
    adapters.mkdir()
    arguments = ["--chapter", "transparency", "--no-html", "-p", "released_root", str(released_root)]
    arguments += ["-p", "adapter_root", str(adapters), "-p", "runs_root", str(tmp_path / "runs")]

    def build(*extra: str) -> str:
        assert book.main([*arguments, *extra]) == 0
        return capsys.readouterr().out

    assert "executed transparency" in build()
    output = tmp_path / "book" / "chapters" / "transparency.ipynb"
    stamp = output.stat().st_mtime_ns
    kept = build()
    assert "kept transparency" in kept and "kept: inputs unchanged" in kept
    assert output.stat().st_mtime_ns == stamp  # not rewritten, so Sphinx does not read it again
    derived = tmp_path / "released_rescored"  # a sibling of a folder the chapter names counts as read
    derived.mkdir()
    (derived / "manifest.json").write_text("{}")
    assert "executed transparency" in build()
    assert "executed transparency" in build("--force")


def test_every_chapter_runs_after_the_chapters_it_reads():
    order = book.build_order(list(book.CHAPTERS))
    assert sorted(order) == sorted(book.CHAPTERS) and order[-1] == "transparency"
    for name, needs in book.NEEDS.items():
        assert all(order.index(need) < order.index(name) for need in needs), name
    # the rest keeps the CHAPTERS order; a partial build orders only what it holds
    assert order[:4] == ["domain_adaptation", "bias", "privacy", "hallucination"]
    assert book.build_order(["cost", "structured", "bias"]) == ["bias", "structured", "cost"]
    assert book.ready_chapters(["generality", "bias"], set(), ["generality", "bias"]) == ["generality", "bias"]
    assert book.ready_chapters(["generality"], set(), ["domain_adaptation", "generality"]) == []


# a stand-in for `python -m labscale.book --chapter NAME --no-html --report PATH`: it logs when it ran and with how
# many threads, and reports its row as the real child does (a chapter named in FAIL exits with status 3)
CHILD = r"""
import json, os, sys, time
name, report = sys.argv[sys.argv.index("--chapter") + 1], sys.argv[sys.argv.index("--report") + 1]
log = os.environ["BOOK_TEST_LOG"]
start = time.time()
time.sleep(0.6)
with open(log, "a") as handle:
    handle.write(json.dumps([name, start, time.time(), os.environ["OMP_NUM_THREADS"], sys.argv[-2:]]) + "\n")
if name in os.environ.get("FAIL", "").split(","):
    sys.exit(3)
with open(report, "w") as handle:
    json.dump([{"chapter": name, "seconds": 0.6, "records written": 1, "model calls": 2, "cache hits": 0}], handle)
"""


def _child_runs(log):
    import json

    return {row[0]: row[1:] for row in map(json.loads, log.read_text().splitlines())}


def test_chapters_run_two_at_a_time_after_what_they_read(tmp_path, monkeypatch):
    import sys

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("BOOK_TEST_LOG", str(log))
    monkeypatch.setattr(book.os, "cpu_count", lambda: 4)
    chapters = book.build_order(["generality", "domain_adaptation", "bias", "privacy"])
    arguments = {name: ["-p", f"{name}.seed"] for name in chapters}
    rows, failed = book.build_in_parallel(chapters, 2, arguments, program=[sys.executable, str(script)])
    assert failed == [] and [r["chapter"] for r in rows] == chapters and rows[0]["model calls"] == 2
    runs = _child_runs(log)
    assert {threads for _, _, threads, _ in runs.values()} == {"2"}  # 4 cores shared by 2 kernels
    assert all(arguments == ["-p", f"{name}.seed"] for name, (*_, arguments) in runs.items())  # each its own
    assert runs["generality"][0] >= runs["domain_adaptation"][1]  # it reads the domain-adaptation adapter
    first = sorted(runs, key=lambda name: runs[name][0])[:2]
    assert sorted(first) == ["domain_adaptation", "privacy"]  # the longest chains of the ready chapters start first
    assert sorted(book.CRITICAL_FIRST) == sorted(book.CHAPTERS) == sorted(book.COLD_SECONDS)
    spans = sorted((start, end) for start, end, *_ in runs.values())
    assert spans[1][0] < spans[0][1]  # two at once...
    at_once = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert at_once == 2  # ...and never three


def test_critical_path_puts_what_others_wait_for_first(monkeypatch):
    # with study outputs shorter than generality, head to head's wait for it still makes its chain the longer one
    monkeypatch.setitem(book.COLD_SECONDS, "study_outputs", 200)
    monkeypatch.setitem(book.COLD_SECONDS, "generality", 250)
    assert book.critical_path_seconds("study_outputs") == (
        200 + book.COLD_SECONDS["head_to_head"] + book.COLD_SECONDS["transparency"]
    )
    assert (
        book.critical_path_seconds("generality") == 250 + book.COLD_SECONDS["cost"] + book.COLD_SECONDS["transparency"]
    )
    order = sorted(book.CHAPTERS, key=book.critical_path_seconds, reverse=True)
    assert order.index("study_outputs") < order.index("generality")
    # the measured times: domain adaptation heads the longest chain, and transparency (which reads every chapter) ends
    assert book.CRITICAL_FIRST[0] == "domain_adaptation" and book.CRITICAL_FIRST[-1] == "transparency"


def test_a_failed_chapter_stops_the_parallel_build(tmp_path, monkeypatch):
    import sys

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("BOOK_TEST_LOG", str(log))
    monkeypatch.setenv("FAIL", "domain_adaptation")
    chapters = ["domain_adaptation", "bias", "generality", "head_to_head"]
    rows, failed = book.build_in_parallel(chapters, 2, {}, program=[sys.executable, str(script)])
    assert failed == ["domain_adaptation"] and [r["chapter"] for r in rows] == ["bias"]
    assert set(_child_runs(log)) == {"domain_adaptation", "bias"}  # nothing that reads it started


def test_overrides_reach_only_the_chapters_that_declare_them():
    chapters = book.build_order(["domain_adaptation", "bias", "cost", "structured"])
    overrides = book.chapter_overrides(chapters, [("limit", 10), ("structured.limit", 50), ("gpu", "a40")])
    # a plain name for every chapter that has it (cost has no limit); CHAPTER.NAME for that one, later pairs winning
    assert overrides == {
        "domain_adaptation": {"limit": 10},
        "bias": {"limit": 10},
        "cost": {"gpu": "a40"},
        "structured": {"limit": 50, "gpu": "a40"},
    }
    # a profile first, then -p over it
    large = book.chapter_overrides(chapters, [("bias.bbq_limit", 40)], profile="large")
    assert large == {
        "domain_adaptation": {},
        "bias": {"limit": 100, "bbq_limit": 40},
        "cost": {},
        "structured": {"limit": 100},
    }


@pytest.mark.parametrize(
    ("pairs", "profile", "message"),
    [
        ([("limmit", 10)], "default", "-p limmit: no chapter of this build (bias, cost) has that parameter; valid: "),
        ([("bias.limmit", 10)], "default", "chapter bias has no parameter 'limmit'; valid: models, shots, limit,"),
        ([("structured.limit", 10)], "default", "'structured' is not a chapter of this build; valid: bias, cost"),
        ([], "huge", "unknown book profile 'huge'; valid choices: 'default', 'large'"),
    ],
)
def test_a_misspelt_override_fails_naming_the_valid_ones(pairs, profile, message):
    with pytest.raises(book.InvalidParameter) as error:
        book.chapter_overrides(["bias", "cost"], pairs, profile=profile)
    assert message in str(error.value)


def test_the_book_command_rejects_an_unknown_parameter_before_any_chapter_runs(monkeypatch, capsys):
    monkeypatch.setattr(book, "execute_chapter", lambda *a, **k: pytest.fail("no chapter may run"))
    with pytest.raises(SystemExit) as exit_:
        book.main(["--chapter", "cost", "-p", "limit", "5", "--no-html"])
    assert exit_.value.code == 2
    valid = "as_of, finetune_records, gpu, price_map, quality_metric, runs_root, task, or CHAPTER.NAME for one chapter"
    assert f"-p limit: no chapter of this build (cost) has that parameter; valid: {valid}" in capsys.readouterr().err


def test_every_profile_names_real_chapters_and_parameters():
    assert book.PROFILES["default"] == {}
    for profile, chapters in book.PROFILES.items():
        for name, overrides in chapters.items():
            assert set(overrides) <= set(book.parameter_names(name)), (profile, name)
    # "large": at least 100 items per condition wherever a chapter samples fewer by default
    assert {name: min(o.values()) for name, o in book.PROFILES["large"].items()} == dict.fromkeys(
        book.PROFILES["large"], 100
    )


def test_a_child_gets_its_overrides_back_as_the_same_values(tmp_path):
    overrides = {
        "limit": 100,
        "shots": [0, 3],
        "task_options": {"viggo": {"a": None}},
        "finetune_preset": "cpu",
        "ratio": 0.25,
        "finetune": False,
    }
    arguments = book.child_arguments("structured", overrides)
    assert arguments[:3] == ["-p", "structured.limit", "100"] and arguments[4:6] == ["structured.shots", "[0, 3]"]
    pairs = [(arguments[i + 1], book._parse_value(arguments[i + 2])) for i in range(0, len(arguments), 3)]
    assert pairs == [(f"structured.{k}", v) for k, v in overrides.items()]


def test_a_parallel_build_hands_each_child_its_own_overrides(monkeypatch):
    seen = {}

    def record(chapters, jobs, arguments, **kwargs):  # the children themselves are exercised above
        seen.update(chapters=chapters, jobs=jobs, arguments=arguments)
        return [], []

    monkeypatch.setattr(book, "build_in_parallel", record)
    argv = ["--chapter", "bias", "--chapter", "cost", "--profile", "large", "-p", "seed", "3", "--force", "--no-html"]
    assert book.main([*argv, "--jobs", "2"]) == 0
    assert seen["chapters"] == ["bias", "cost"] and seen["jobs"] == 2  # cost reads the bias records
    assert seen["arguments"] == {
        "bias": ["-p", "bias.limit", "100", "-p", "bias.bbq_limit", "100", "-p", "bias.seed", "3", "--force"],
        "cost": ["--force"],  # the cost chapter has neither a sample nor a seed
    }
