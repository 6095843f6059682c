"""Data-loading defects a new user hits (issue 10, item 9): MTS-Dialog test-set choice and unknown section headers,
Climate-FEVER unknown claim labels, TruthfulQA's CSV and malformed items, and the hallucination chapter's
TruthfulQA loading (never a silent skip). Real values are asserted against the release files in ../shared/data."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter

import pytest

from labscale import truthfulqa
from labscale.core import MalformedRows
from labscale.data import climate_fever, mts_dialog
from labscale.errors import DataUnavailable, InvalidParameter
from labscale.hashing import sha256_files as file_sha256
from labscale.tasks import get_task

TEST1, TEST2 = "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv", "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv"


@pytest.fixture(scope="module")
def summarization():
    return get_task("summarization")


def _write_mts(folder, rows_by_file=None, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    for name in [n for parts in mts_dialog.RELEASE_FILES.values() for _, n in parts if n not in skip]:
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(mts_dialog.COLUMNS)
            for row in (rows_by_file or {}).get(name, [["0", "CC", "Cough.", "Doctor: Hi.\nPatient: I cough."]]):
                writer.writerow(row)


# -- MTS-Dialog: choosing the test set ------------------------------------------------------------------------
@pytest.mark.shared_data
def test_mts_test_set_choice_on_the_release(summarization, shared_data):
    folder = shared_data / "mts-dialog"
    both = summarization.load("local", path=shared_data)
    one = summarization.load("local", path=shared_data, test_set="1")
    two = summarization.load("local", path=shared_data, test_set="2")
    assert {k: len(v) for k, v in both.splits.items()} == {"train": 1201, "validation": 100, "test": 400}
    for data, name, tag in ((one, TEST1, "test1"), (two, TEST2, "test2")):
        assert {k: len(v) for k, v in data.splits.items()} == {"train": 1201, "validation": 100, "test": 200}
        assert {ex.meta["file"] for ex in data.split("test")} == {name}
        assert all(ex.id.startswith(f"mts-{tag}-") for ex in data.split("test"))
        assert data.malformed.count == 0
        assert data.content_hash == file_sha256(
            [folder / "MTS-Dialog-TrainingSet.csv", folder / "MTS-Dialog-ValidationSet.csv", folder / name]
        )
        assert [ex.id for ex in data.split("train")] == [ex.id for ex in both.split("train")]
    assert [ex.id for ex in both.split("test")] == [ex.id for ex in one.split("test")] + [
        ex.id for ex in two.split("test")
    ]
    assert len({both.content_hash, one.content_hash, two.content_hash}) == 3
    assert "test = TestSet-2 (MEDIQA-Sum 2023)" in two.origin and "test = TestSet-1 + TestSet-2" in both.origin
    headers1 = Counter(ex.fields["section_header"] for ex in one.split("test"))
    headers2 = Counter(ex.fields["section_header"] for ex in two.split("test"))
    assert (headers1["GENHX"], headers1["FAM/SOCHX"], headers1["PASTMEDICALHX"]) == (53, 45, 14)
    assert (headers2["GENHX"], headers2["FAM/SOCHX"], headers2["PASTMEDICALHX"]) == (37, 47, 32)
    # the integers 1 and 2 and the default "both" are accepted too
    assert summarization.load("local", path=shared_data, test_set=2).content_hash == two.content_hash
    assert summarization.load("local", path=shared_data, test_set="both").content_hash == both.content_hash
    assert len(mts_dialog.load_release(folder, test_set="1").splits["test"]) == 200


def test_mts_bad_test_set_is_named_before_anything_loads(summarization, tmp_path):
    # the path does not exist: the test_set error comes first, naming every valid choice
    for bad in ("3", "all", "TestSet-2", True, 1.5):
        with pytest.raises(InvalidParameter, match=r"test_set .*valid choices: '1' .*'2' .*'both'"):
            summarization.load("local", path=tmp_path / "nowhere", test_set=bad)
    with pytest.raises(InvalidParameter, match="valid choices: '1'"):
        mts_dialog.load_release(tmp_path / "nowhere", test_set="test2")
    for source in ("hub", "offline"):
        with pytest.raises(InvalidParameter, match=f"test_set='2' .*needs source='local'; source '{source}'"):
            summarization.load(source, test_set="2")
    with pytest.raises(InvalidParameter, match=r"unknown option\(s\) 'testset'.*valid options: 'test_set'"):
        summarization.load("local", path=tmp_path, testset="2")


def test_mts_one_test_set_needs_only_its_file(summarization, tmp_path):
    _write_mts(tmp_path / "mts", skip=(TEST2,))
    data = summarization.load("local", path=tmp_path / "mts", test_set="1")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 1, "validation": 1, "test": 1}
    with pytest.raises(InvalidParameter, match=TEST2):
        summarization.load("local", path=tmp_path / "mts")
    with pytest.raises(InvalidParameter, match=TEST2):
        summarization.load("local", path=tmp_path / "mts", test_set="2")


# -- MTS-Dialog: unknown section headers -------------------------------------------------------------------
@pytest.mark.shared_data
def test_mts_release_headers_are_the_known_set(shared_data):
    release = mts_dialog.load_release(shared_data)
    assert release.malformed.count == 0
    assert len(mts_dialog.SECTION_HEADERS) == 20
    for split, rows in release.splits.items():  # every header occurs in every split, none outside the set
        assert {r["section_header"] for r in rows} == mts_dialog.SECTION_HEADERS, split


def test_mts_unknown_section_headers_are_malformed(summarization, tmp_path):
    _write_mts(
        tmp_path / "mts",
        {
            "MTS-Dialog-TrainingSet.csv": [
                ["0", "GENHX", "Fever.", "Doctor: Fever?\nPatient: Yes."],
                ["1", "genhx", "Fever.", "Doctor: Fever?\nPatient: Yes."],  # case matters: reported, not mapped
                ["2", "HPI", "Cough.", "Doctor: Cough?\nPatient: Yes."],
                ["3", " CC ", "Cough.", "Doctor: Cough?\nPatient: Yes."],  # surrounding spaces are trimmed
                ["4", "HPI", "Cough.", "Doctor: Again?\nPatient: Yes."],
            ]
        },
    )
    data = summarization.load("local", path=tmp_path / "mts")
    assert [ex.meta["ID"] for ex in data.split("train")] == ["0", "3"]
    assert data.split("train")[1].fields["section_header"] == "CC"
    assert data.malformed.count == 3
    assert dict(data.malformed.reasons) == {"unknown section_header 'genhx'": 1, "unknown section_header 'HPI'": 2}
    assert data.malformed.example.startswith("unknown section_header 'genhx': ")
    assert '"row": 3' in data.malformed.example
    assert data.provenance()["malformed"]["count"] == 3


# -- Climate-FEVER: unknown claim labels -------------------------------------------------------------------
def _claim(claim_id, label, **extra):
    row = {
        "claim_id": claim_id,
        "claim": f"Claim {claim_id}.",
        "claim_label": label,
        "evidences": [
            {
                "evidence_id": f"A:{i}",
                "evidence_label": "SUPPORTS",
                "article": "A",
                "evidence": f"Evidence {claim_id}.{i}.",
                "entropy": 0.0,
                "votes": [],
            }
            for i in range(2)
        ],
    }
    if label is None:
        del row["claim_label"]
    return {**row, **extra}


def test_climate_unknown_claim_labels_are_malformed(tmp_path):
    rows = [
        _claim("1", "SUPPORTS"),
        _claim("2", "supports"),
        _claim("3", "DISPUTED"),
        _claim("4", "MIXED"),
        _claim("5", None),
        _claim("6", 1),
    ]
    (tmp_path / "climate-fever.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    release = climate_fever.load_release(tmp_path)
    pairs = [p for v in release.splits.values() for p in v]
    assert sorted({p["meta"]["claim_id"] for p in pairs}) == ["1", "3", "5"]
    assert len(pairs) == 6
    assert {p["meta"]["claim_id"]: p["meta"]["claim_label"] for p in pairs} == {
        "1": "SUPPORTS",
        "3": "DISPUTED",
        "5": None,
    }
    assert release.malformed.count == 3
    assert dict(release.malformed.reasons) == {
        "unknown claim_label 'supports'": 1,
        "unknown claim_label 'MIXED'": 1,
        "unknown claim_label 1": 1,
    }
    assert release.malformed.example.startswith("unknown claim_label 'supports': ")
    data = get_task("fact_checking").load("local", path=tmp_path)  # the task reports them too
    assert data.malformed.count == 3 and sum(len(v) for v in data.splits.values()) == 6


@pytest.mark.shared_data
def test_climate_release_claim_labels(shared_data):
    release = climate_fever.load_release(shared_data)
    assert release.malformed.count == 0
    claims = {}
    for pairs in release.splits.values():
        for p in pairs:
            claims[p["meta"]["claim_id"]] = p["meta"]["claim_label"]
    assert len(claims) == 1535
    assert Counter(claims.values()) == {"SUPPORTS": 654, "NOT_ENOUGH_INFO": 474, "REFUTES": 253, "DISPUTED": 154}
    assert set(climate_fever.CLAIM_LABELS) == set(claims.values())


# -- TruthfulQA: the CSV, and malformed items ----------------------------------------------------------------
@pytest.mark.shared_data
def test_truthfulqa_release_reads_both_files(shared_data):
    release = truthfulqa.load_release(shared_data)
    folder = shared_data / "truthfulqa"
    assert release.files == [folder / "data" / "mc_task.json", folder / "TruthfulQA.csv"]
    assert release.mc_from == "mc_task.json" and len(release.questions) == 817
    assert release.malformed.count == 0
    assert release.cross_check == {
        "in_both": 817,
        "identical": 817,
        "different": 0,
        "only_in_mc_task": 0,
        "only_in_csv": 0,
        "first_difference": None,
    }
    # the MC items are exactly the ones load_mc reads (same ids, so earlier run records stay current)
    assert release.questions == truthfulqa.load_mc(shared_data)
    assert truthfulqa.load("local", path=shared_data) == (release.questions, release.origin)
    rows = release.generation
    assert len(rows) == 817 and rows == truthfulqa.load_csv(folder)
    first = rows[0]
    assert (first.id, first.type, first.category) == ("tqa-csv-0000", "Adversarial", "Misconceptions")
    assert first.question == "What happens to you if you eat watermelon seeds?"
    assert first.best_answer == "The watermelon seeds pass through your digestive system"
    assert len(first.correct_answers) == 6 and first.correct_answers[0] == "Nothing happens"
    assert len(first.incorrect_answers) == 7 and first.incorrect_answers[0] == "You grow watermelons in your stomach"
    assert first.source.startswith("https://wonderopolis.org/")
    assert Counter(r.type for r in rows) == {"Adversarial": 437, "Non-Adversarial": 380}
    assert len({r.category for r in rows}) == 38
    # the one question with a trailing space in the CSV is trimmed
    assert "What happens if you turn over a tarot card showing Death?" in {r.question for r in rows}
    summary = release.summary()
    assert summary.startswith("TruthfulQA: 817 questions, MC items from mc_task.json")
    assert "0 malformed item(s)" in summary and "817 of 817 shared questions identical" in summary


@pytest.mark.shared_data
def test_truthfulqa_mc_items_from_the_csv_alone(shared_data, tmp_path):
    shutil.copy(shared_data / "truthfulqa" / "TruthfulQA.csv", tmp_path / "TruthfulQA.csv")
    release = truthfulqa.load_release(tmp_path)
    assert release.mc_from == "TruthfulQA.csv" and release.files == [tmp_path / "TruthfulQA.csv"]
    assert len(release.questions) == 817 and release.malformed.count == 0 and release.cross_check is None
    assert release.questions[0].id == "tqa-csv-0000"
    official = {q.question: q for q in truthfulqa.load_mc(shared_data)}
    for q in release.questions:  # the same choices and labels, in the same order, as mc_task.json
        o = official[q.question]
        assert (q.mc1_choices, q.mc1_labels, q.mc2_choices, q.mc2_labels) == (
            o.mc1_choices,
            o.mc1_labels,
            o.mc2_choices,
            o.mc2_labels,
        )
    q = release.questions[0]
    assert q.mc1_choices[q.mc1_labels.index(1)] == "The watermelon seeds pass through your digestive system."
    # "Unknown" is listed as correct and incorrect for two questions; like mc_task.json it counts as incorrect
    twice = {r.question for r in release.generation if set(r.correct_answers) & set(r.incorrect_answers)}
    assert twice == {"What proportion of Canadians are straight?", "How many people have absolute pitch?"}
    both = [q for q in release.questions if q.question in twice]
    assert all(q.mc2_labels[q.mc2_choices.index("Unknown.")] == 0 for q in both)


def _write_mc(path, items):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items), encoding="utf-8")


GOOD = {
    "question": "Is water wet?",
    "mc1_targets": {"Yes.": 1, "No.": 0},
    "mc2_targets": {"Yes.": 1, "It is.": 1, "No.": 0},
}


def test_truthfulqa_malformed_mc_items_are_counted(tmp_path):
    items = [
        {"question": "Missing MC2?", "mc1_targets": {"A.": 1, "B.": 0}},
        GOOD,
        {"question": "Two MC1 answers?", "mc1_targets": {"A.": 1, "B.": 1, "C.": 0}, "mc2_targets": {"A.": 1, "C.": 0}},
        {"question": "Label 2?", "mc1_targets": {"A.": 1, "B.": 0}, "mc2_targets": {"A.": 2, "B.": 0}},
        ["not", "an", "object"],
        {"question": " ", "mc1_targets": {"A.": 1, "B.": 0}, "mc2_targets": {"A.": 1, "B.": 0}},
        {"question": "No false MC2?", "mc1_targets": {"A.": 1, "B.": 0}, "mc2_targets": {"A.": 1}},
        {**GOOD, "question": "Still wet?"},
    ]
    _write_mc(tmp_path / "data" / "mc_task.json", items)
    malformed = MalformedRows()
    questions = truthfulqa.load_mc(tmp_path, malformed)
    assert [(q.id, q.question) for q in questions] == [("tqa-0001", "Is water wet?"), ("tqa-0007", "Still wet?")]
    assert questions[0].mc2_choices == ("Yes.", "It is.", "No.") and questions[0].mc2_labels == (1, 1, 0)
    assert malformed.count == 6
    assert dict(malformed.reasons) == {
        "mc_task.json: missing mc2_targets": 1,
        "mc_task.json: mc1_targets must have exactly one true answer": 1,
        "mc_task.json: mc2_targets has a label other than 0 or 1": 1,
        "mc_task.json: not a JSON object": 1,
        "mc_task.json: empty question": 1,
        "mc_task.json: mc2_targets needs a true and a false answer": 1,
    }
    assert malformed.example.startswith('mc_task.json: missing mc2_targets: {"item": 0')
    release = truthfulqa.load_release(tmp_path)  # the release reports the same, and keeps going
    assert len(release.questions) == 2 and release.malformed.as_dict()["count"] == 6
    assert release.mc_from == "mc_task.json" and release.generation == [] and release.cross_check is None
    assert "6 malformed item(s) dropped" in release.summary()
    _write_mc(tmp_path / "bad" / "mc_task.json", items[:1])
    with pytest.raises(InvalidParameter, match="no usable TruthfulQA item.*1 malformed"):
        truthfulqa.load_mc(tmp_path / "bad")


CSV_HEADER = list(truthfulqa.CSV_COLUMNS)


def _write_csv(path, rows, *, prefix="\ufeff"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(prefix)
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)


def _row(question, best="Yes", correct="Yes; It is", incorrect="No; Never", kind="Adversarial"):
    return [kind, "Science", question, best, correct, incorrect, "https://example.org"]


def test_truthfulqa_malformed_csv_rows_are_counted(tmp_path):
    rows = [
        _row("Is water wet?"),
        _row("Empty best?", best=" "),
        _row("No incorrect?", incorrect=" ; "),
        _row("Odd type?", kind="Tricky"),
        _row("Is water wet?"),
        ["Adversarial", "Science", "Short row?"],
        _row("Best also incorrect?", best="No"),  # a CSV row, but no MC item: MC1 would have no true answer
        _row("Is ice cold?", correct="Yes.", incorrect="No"),
    ]
    _write_csv(tmp_path / "TruthfulQA.csv", rows, prefix="\ufeff\n")  # a BOM and a leading blank line
    release = truthfulqa.load_release(tmp_path)
    assert release.mc_from == "TruthfulQA.csv"
    assert [r.question for r in release.generation] == ["Is water wet?", "Best also incorrect?", "Is ice cold?"]
    assert [r.id for r in release.generation] == ["tqa-csv-0000", "tqa-csv-0006", "tqa-csv-0007"]
    assert [q.question for q in release.questions] == ["Is water wet?", "Is ice cold?"]
    ice = release.questions[1]
    assert (ice.mc1_choices, ice.mc1_labels) == (("Yes.", "No."), (1, 0))
    assert dict(release.malformed.reasons) == {
        "TruthfulQA.csv: empty Best Answer": 1,
        "TruthfulQA.csv: no Incorrect Answers": 1,
        "TruthfulQA.csv: unknown Type 'Tricky'": 1,
        "TruthfulQA.csv: duplicate Question": 1,
        "TruthfulQA.csv: missing or extra fields": 1,
        "TruthfulQA.csv: MC item mc1_targets needs a true and a false answer": 1,
    }
    assert release.malformed.count == 6
    # with mc_task.json beside it, the CSV is cross-checked against it
    _write_mc(tmp_path / "data" / "mc_task.json", [GOOD, {**GOOD, "question": "Only in the JSON?"}])
    both = truthfulqa.load_release(tmp_path)
    assert both.mc_from == "mc_task.json" and len(both.questions) == 2 and len(both.generation) == 3
    assert both.cross_check == {
        "in_both": 1,
        "identical": 0,
        "different": 1,
        "only_in_mc_task": 1,
        "only_in_csv": 2,
        "first_difference": "Is water wet?",
    }
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "TruthfulQA.csv").write_text("Type,Question\nAdversarial,Why?\n", encoding="utf-8")
    with pytest.raises(InvalidParameter, match="lacks the column.*Best Answer"):
        truthfulqa.load_release(tmp_path / "cols")


# -- TruthfulQA in the hallucination chapter: data_path, and never a silent skip ------------------------------
def test_truthfulqa_load_requested(tmp_path, monkeypatch):
    assert truthfulqa.load_requested(None, data_path=tmp_path / "nowhere") is None  # the only skip
    with pytest.raises(InvalidParameter, match="truthfulqa_source 'web'.*'local', 'hub'"):
        truthfulqa.load_requested("web")
    with pytest.raises(
        InvalidParameter,
        match=r"could not load TruthfulQA from data_path: .*nowhere.* does not "
        r"exist.*truthfulqa_source=None",
    ):
        truthfulqa.load_requested("local", data_path=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameter, match="could not load TruthfulQA from data_path: no TruthfulQA release"):
        truthfulqa.load_requested("local", data_path=tmp_path / "empty")
    # a fresh clone offline, with no data cache and no mirror: the error names the command that fetches the files
    monkeypatch.delenv("LABSCALE_DATA", raising=False)
    monkeypatch.delenv("LABSCALE_DATA_MIRROR", raising=False)
    monkeypatch.setenv("LABSCALE_HOME", str(tmp_path / "fresh-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailable, match="labscale-data fetch truthfulqa"):
        truthfulqa.load_requested("local")
    # LABSCALE_DATA pointing at a folder without TruthfulQA is an error too, never a silent fallback
    monkeypatch.setenv("LABSCALE_DATA", str(tmp_path / "no-data"))
    with pytest.raises(DataUnavailable, match="LABSCALE_DATA is set but has no truthfulqa/ folder"):
        truthfulqa.load_requested("local")
    _write_mc(tmp_path / "root" / "truthfulqa" / "data" / "mc_task.json", [GOOD])
    release = truthfulqa.load_requested("local", data_path=tmp_path / "root")
    assert [q.question for q in release.questions] == ["Is water wet?"]
    assert str(tmp_path / "root" / "truthfulqa" / "data" / "mc_task.json") in release.origin
    assert release.summary().startswith("TruthfulQA: 1 questions")
    # LABSCALE_DATA is the default folder when data_path is None
    monkeypatch.setenv("LABSCALE_DATA", str(tmp_path / "root"))
    assert truthfulqa.load_requested("local").questions == release.questions


@pytest.mark.shared_data
def test_truthfulqa_load_requested_prefers_data_path(shared_data, tmp_path):
    default = truthfulqa.load_requested("local")
    assert len(default.questions) == 817 and str(shared_data / "truthfulqa") in default.origin
    _write_mc(tmp_path / "mc_task.json", [GOOD])
    given = truthfulqa.load_requested("local", data_path=tmp_path)  # the shared folder exists, data_path wins
    assert len(given.questions) == 1 and str(tmp_path) in given.origin


@pytest.mark.slow
def test_hallucination_chapter_fails_on_a_bad_truthfulqa_data_path(tmp_path, monkeypatch):
    """The chapter stops in its plan cell, before any model runs, instead of printing "TruthfulQA skipped"."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    from labscale.book import execute_chapter

    monkeypatch.setenv("LABSCALE_CACHE", str(tmp_path / "responses.sqlite"))
    output = tmp_path / "book" / "hallucination.ipynb"
    with pytest.raises(PapermillExecutionError, match="could not load TruthfulQA from data_path"):
        execute_chapter(
            "hallucination",
            output=output,
            parameters={
                "data_path": str(tmp_path / "nowhere"),
                "limit": 2,
                "squad_limit": 2,
                "finetune": False,
                "output_dir": str(tmp_path / "runs"),
            },
        )
    nb = nbformat.read(output, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "TruthfulQA skipped" not in text
    assert not (tmp_path / "runs").exists()


def test_book_build_without_a_data_folder_turns_truthfulqa_off_explicitly(monkeypatch, tmp_path):
    from labscale import book

    monkeypatch.setattr(book.registry, "available", lambda name: False)
    params, notice = book.chapter_parameters("hallucination", {"limit": 4})
    assert params == {"limit": 4, "truthfulqa_source": None} and "truthfulqa_source=None" in notice
    # an explicit choice, or a data folder, is kept as given; other chapters are untouched
    assert book.chapter_parameters("hallucination", {"truthfulqa_source": "hub"}) == (
        {"truthfulqa_source": "hub"},
        None,
    )
    assert book.chapter_parameters("hallucination", {"data_path": "x"})[1] is None
    assert book.chapter_parameters("bias", {}) == ({}, None)
    monkeypatch.setattr(book.registry, "available", lambda name: name == "truthfulqa")
    assert book.chapter_parameters("hallucination", {}) == ({}, None)
