"""Clinical dialogue summarization: parsing, prompts, shots, the release loader, the hub error and scoring."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from labscale.data import mts_dialog
from labscale.errors import DataUnavailable, InvalidParameter
from labscale.hashing import sha256_files as file_sha256
from labscale.tasks import INVALID, Example, get_task
from labscale.tasks.summarization import INSTRUCTION, SYSTEM_MESSAGE, Summarization


@pytest.fixture(scope="module")
def task() -> Summarization:
    return get_task("summarization")


@pytest.fixture(scope="module")
def offline(task):
    return task.load("offline", seed=0)


@pytest.fixture(scope="module")
def local(task, shared_data):
    return task.load("local", path=shared_data)


def test_task_attributes(task):
    assert isinstance(task, Summarization)
    assert (task.name, task.title) == ("summarization", "Clinical dialogue summarization")
    assert task.headline_metrics == ("bleu", "bertscore_f1")
    assert task.max_new_tokens == 128
    assert task.shot_style == "chat"
    assert task.system_message == (
        "You are a helpful medical assistant! Please help me summarize dialogues "
        "between doctors and patients. I will provide you with the content and topic "
        "for each dialogue. "
    )
    assert task.instruction == "Please summarize the following dialogue."


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The patient is a 26-year-old female.", "The patient is a 26-year-old female."),
        ("  Penicillin.\n\n", "Penicillin."),
        ("Summary: No known allergies.", "No known allergies."),
        ("## Summary:\nLisinopril 10 mg daily.", "Lisinopril 10 mg daily."),
        ("summary:   Hypertension.", "Hypertension."),
        ("Chief complaint: cough.", "Chief complaint: cough."),
        ("", INVALID),
        ("   \n", INVALID),
        ("Summary:", INVALID),
        ("## Summary:  ", INVALID),
    ],
)
def test_parse_table(task, reply, expected):
    assert task.parse(reply) == expected


def test_query_format(task):
    ex = Example("x", {"dialogue": "Doctor: Hi.\nPatient: Hello.", "section_header": "CC"}, "Cough.")
    assert task.format_input(ex) == "## Content:\nDoctor: Hi.\nPatient: Hello.\n\n## Topic:\nCC\n\n## Summary:"


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_chat_messages(task, offline, k):
    ex = offline.split("test")[0]
    shots = task.shots(offline, k)
    messages = task.messages(ex, shots)  # default style: chat
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * k + ["user"]
    assert messages[0]["content"] == SYSTEM_MESSAGE
    assert messages[1]["content"].startswith(INSTRUCTION)
    assert sum(INSTRUCTION in m["content"] for m in messages) == 1
    validation = offline.split("validation")
    assert [m["content"] for m in messages[2::2]][:k] == [validation[i].target for i in (0, 1, 5)][:k]
    assert messages[-1]["content"].endswith(task.format_input(ex))


@pytest.mark.parametrize("k", [0, 3])
def test_single_messages(task, offline, k):
    ex = offline.split("test")[0]
    messages = task.messages(ex, task.shots(offline, k), shot_style="single")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"].startswith(INSTRUCTION)
    assert messages[1]["content"].endswith(task.format_input(ex))


def test_shots_need_six_validation_items(task):
    data = task.load("offline", sizes={"train": 1, "validation": 5, "test": 1})
    with pytest.raises(InvalidParameter, match="validation items"):
        task.shots(data, 1)


# -- the original release ---------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_local_release(local, shared_data):
    assert {k: len(v) for k, v in local.splits.items()} == {"train": 1201, "validation": 100, "test": 400}
    assert local.malformed.count == 0
    assert not local.synthetic
    folder = shared_data / "mts-dialog"
    assert local.content_hash == file_sha256(sorted(folder.glob("MTS-Dialog-*.csv")))
    ids = [ex.id for v in local.splits.values() for ex in v]
    assert len(ids) == len(set(ids)) == 1701
    test_files = Counter(ex.meta["file"] for ex in local.split("test"))
    assert test_files == {
        "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv": 200,
        "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv": 200,
    }
    headers = Counter(ex.fields["section_header"] for ex in local.split("train"))
    assert headers["FAM/SOCHX"] == 351 and headers["GENHX"] == 282
    assert all(ex.fields["dialogue"].strip() and ex.target.strip() for v in local.splits.values() for ex in v)


@pytest.mark.shared_data
def test_local_shots_are_validation_0_1_5(task, local):
    shots = task.fixed_shots(local)
    validation = local.split("validation")
    assert [validation[i].meta["ID"] for i in (0, 1, 5)] == ["0", "1", "5"]
    assert shots[0].assistant.startswith("The patient is a 26-year-old female, referred to Physical Therapy")
    assert shots[1].assistant.startswith("As mentioned denies any oropharyngeal swelling.")  # "negation"
    assert shots[2].assistant.startswith("32 weeks gestation to a G4 mother")  # "short"
    assert shots[2].user.endswith("## Topic:\nGENHX\n\n## Summary:")


def _write_release(folder, rows_by_file, header=mts_dialog.COLUMNS):
    folder.mkdir(parents=True, exist_ok=True)
    for name in [n for parts in mts_dialog.RELEASE_FILES.values() for _, n in parts]:
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows_by_file.get(name, [["0", "CC", "Cough.", "Doctor: Hi.\nPatient: I cough."]]):
                writer.writerow(row)


def test_local_malformed_rows(task, tmp_path):
    _write_release(
        tmp_path / "mts-dialog",
        {
            "MTS-Dialog-TrainingSet.csv": [
                ["0", "CC", "Cough.", "Doctor: What brings you in?\nPatient: A cough."],
                ["1", "GENHX", "Fever.", "   "],
                ["2", "ALLERGY", "", "Doctor: Allergies?\nPatient: None."],
                ["3", "CC"],
            ]
        },
    )
    data = task.load("local", path=tmp_path)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 1, "validation": 1, "test": 2}
    assert data.malformed.count == 3
    assert dict(data.malformed.reasons) == {"empty dialogue": 1, "empty section_text": 1, "missing or extra fields": 1}
    assert data.malformed.example.startswith("empty dialogue: ")


def test_local_missing_column_and_file(task, tmp_path):
    _write_release(tmp_path / "a", {}, header=("ID", "section_header", "dialogue"))
    with pytest.raises(InvalidParameter, match="section_text"):
        task.load("local", path=tmp_path / "a")
    _write_release(tmp_path / "b", {})
    (tmp_path / "b" / "MTS-Dialog-ValidationSet.csv").unlink()
    with pytest.raises(InvalidParameter, match="MTS-Dialog-ValidationSet.csv"):
        task.load("local", path=tmp_path / "b")
    with pytest.raises(InvalidParameter, match="no MTS-Dialog release"):
        task.load("local", path=tmp_path)


def test_hub_offline_error(task, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailable) as info:
        task.load("hub")
    message = str(info.value)
    assert "beanham/medsum" in message
    assert "source='offline'" in message and "source='local'" in message


def test_offline_data_is_marked_synthetic(offline):
    assert offline.synthetic
    assert "SYNTHETIC" in offline.origin and "synthetic_dialogues" in offline.origin
    assert {k: len(v) for k, v in offline.splits.items()} == {"train": 300, "validation": 40, "test": 60}


def test_bertscore_model_option():
    task = get_task("summarization")
    assert task.bertscore_model is None
    task.load("offline", sizes={"train": 0, "validation": 6, "test": 1}, bertscore_model="distilbert-base-uncased")
    assert task.bertscore_model == "distilbert-base-uncased"
    with pytest.raises(InvalidParameter, match="unknown option"):
        task.load("offline", colour="blue")


# -- scoring ----------------------------------------------------------------------------------------------
def test_score_small(task):
    refs = [
        "Lisinopril 10 mg once a day.",
        "No known allergies.",
        "Her mother had diabetes.",
        "Hypertension and asthma.",
    ]
    replies = ["Summary: Lisinopril 10 mg once a day.", "No known allergies.", "   ", "Hypertension and asthma."]
    parsed = [task.parse(r) for r in replies]
    assert parsed[2] == INVALID
    examples = [Example(str(i), {"dialogue": "d", "section_header": "CC"}, r) for i, r in enumerate(refs)]
    metrics = task.score(examples, parsed, seed=0, n_resamples=200)
    assert {"bleu", "bertscore_f1", "rouge1", "rouge2", "rougeL", "invalid_rate"} <= set(metrics)
    assert metrics["invalid_rate"]["value"] == pytest.approx(0.25)
    assert metrics["rouge1"]["value"] == pytest.approx(0.75)  # three exact matches, one empty
    assert metrics["bertscore_f1"]["value"] == pytest.approx(0.75, abs=1e-3)
    assert 0.0 < metrics["bleu"]["value"] <= 1.0
    perfect = task.score(examples, refs, seed=0, n_resamples=100)
    assert perfect["bleu"]["value"] == pytest.approx(1.0)
    assert perfect["invalid_rate"]["value"] == 0.0
