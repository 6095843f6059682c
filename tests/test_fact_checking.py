"""Climate fact-checking: parsing, prompts, shots, the release loader, the hub error and scoring."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sklearn.metrics import f1_score

from labscale.data import climate_fever
from labscale.errors import DataUnavailable, InvalidParameter
from labscale.hashing import sha256_files as file_sha256
from labscale.tasks import INVALID, Example, TaskData, get_task
from labscale.tasks.fact_checking import INSTRUCTION, LABELS, STUDY_SHOTS, TRANSITION, FactChecking


@pytest.fixture(scope="module")
def task() -> FactChecking:
    return get_task("fact_checking")


@pytest.fixture(scope="module")
def offline(task):
    return task.load("offline", seed=0)


@pytest.fixture(scope="module")
def local(task, shared_data):
    return task.load("local", path=shared_data)


def test_task_attributes(task):
    assert isinstance(task, FactChecking)
    assert (task.name, task.title) == ("fact_checking", "Climate fact-checking")
    assert task.labels == ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO")
    assert task.headline_metrics == ("accuracy", "f1_weighted")
    assert task.max_new_tokens == 10
    assert task.shot_style == "single"
    assert task.system_message is None
    assert task.transition == (
        "Here is the example that needs to be classified. Please respond with only one "
        "word after being asked for the correct label."
    )
    assert task.instruction.startswith("Please classify the following Claim into one of three labels")
    assert task.instruction.endswith("Output only one word: SUPPORTS, REFUTES, or NOT_ENOUGH_INFO.")


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("SUPPORTS", "SUPPORTS"),
        ("supports", "SUPPORTS"),
        ("**REFUTES**", "REFUTES"),
        ("It is unclear whether the evidence supports it.", INVALID),  # a label inside a sentence is no answer
        ("I cannot say it SUPPORTS", INVALID),
        (" SUPPORTS.\n", "SUPPORTS"),
        ("REFUTES</s>", "REFUTES"),
        ("The answer is refutes.", "REFUTES"),
        ("Label: REFUTES", "REFUTES"),
        ("Answer: NOT_ENOUGH_INFO", "NOT_ENOUGH_INFO"),
        ("NOT_ENOUGH_INFO", "NOT_ENOUGH_INFO"),
        ("Not enough info", "NOT_ENOUGH_INFO"),
        ("not enough information", "NOT_ENOUGH_INFO"),
        ("NOT ENOUGH INFO.", "NOT_ENOUGH_INFO"),
        ("The correct label is SUPPORTS", "SUPPORTS"),
        ("SUPPORTS. The evidence supports the claim.", "SUPPORTS"),  # one distinct label, named twice
        ("SUPPORTS or REFUTES", INVALID),
        ("REFUTES, or maybe NOT_ENOUGH_INFO", INVALID),
        ("The evidence neither supports nor refutes the claim.", INVALID),
        ("not SUPPORTS", INVALID),
        ("Supported", INVALID),  # only the label words count
        ("I cannot tell.", INVALID),
        ("", INVALID),
        ("   ", INVALID),
    ],
)
def test_parse_table(task, reply, expected):
    assert task.parse(reply) == expected


def test_query_format(task):
    ex = Example("x", {"claim": "C.", "evidence": "E."}, "SUPPORTS")
    assert task.format_input(ex) == "Claim: C. Evidence: E. What is the correct label?"


def test_study_shots_for_local_and_hub(task):
    data = TaskData(task="fact_checking", source="local", origin="test", splits={"test": []})
    shots = task.fixed_shots(data)
    assert [s.assistant for s in shots] == ["SUPPORTS", "NOT_ENOUGH_INFO", "REFUTES"]
    assert shots[0].user == (
        "Claim: The Review concluded that CRU's actions were normal and did not threaten the integrity of peer "
        'review. Evidence: Describing its report as "hugely positive", he stated that "it is especially '
        "important that, despite a deluge of allegations and smears against the CRU, this independent group of "
        'utterly reputable scientists have concluded that there was no evidence of any scientific malpractice." '
        "What is the correct label?"
    )
    assert shots[1].user == (
        "Claim: Recent research also indicates that the quantity of fossil fuels staying in the atmosphere is "
        "much less than previously thought. Evidence: (2007) concluded that unless energy policies changed "
        "substantially, the world would continue to depend on fossil fuels until 2025–2030. What is the correct "
        "label?"
    )
    assert shots[2].user == (
        'Claim: "Global warming" and "climate change" mean different things and have both been used for '
        "decades. Evidence: Global warming and climate change are often used interchangeably. What is the "
        "correct label?"
    )
    hub = TaskData(task="fact_checking", source="hub", origin="test", splits={"test": []})
    assert task.fixed_shots(hub) == shots


def test_offline_shots_come_from_own_train_split(task, offline):
    shots = task.fixed_shots(offline)
    train = offline.split("train")
    expected = [next(ex for ex in train if ex.target == label) for label in ("SUPPORTS", "NOT_ENOUGH_INFO", "REFUTES")]
    assert [s.assistant for s in shots] == ["SUPPORTS", "NOT_ENOUGH_INFO", "REFUTES"]
    assert [s.user for s in shots] == [task.format_input(ex) for ex in expected]
    test_ids = {ex.id for ex in offline.split("test")}
    assert not test_ids & {ex.id for ex in expected}


def test_offline_shots_need_every_label(task):
    data = task.load("offline", seed=0, sizes={"train": 2, "validation": 0, "test": 3})
    with pytest.raises(InvalidParameter, match="train split"):
        task.fixed_shots(data)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_single_prompt_messages(task, offline, k):
    ex = offline.split("test")[0]
    shots = task.shots(offline, k)
    messages = task.messages(ex, shots)  # default style: single
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert content.startswith(INSTRUCTION)
    assert content.endswith(task.format_input(ex))
    assert content.count("Here is an example of how to perform the task.") == (1 if k else 0)
    assert content.count("Here is another example of how to perform the task.") == max(k - 1, 0)
    assert content.count(TRANSITION) == (1 if k else 0)
    for shot in shots:
        assert f"{shot.user}\n{shot.assistant}" in content
    if k:
        assert content.index(TRANSITION) > content.index(shots[-1].user)
        assert content.index(TRANSITION) < content.rindex(task.format_input(ex))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_chat_messages(task, offline, k):
    ex = offline.split("test")[1]
    shots = task.shots(offline, k)
    messages = task.messages(ex, shots, shot_style="chat")
    assert [m["role"] for m in messages] == ["user", "assistant"] * k + ["user"]
    assert messages[0]["content"].startswith(INSTRUCTION)
    assert sum(INSTRUCTION in m["content"] for m in messages) == 1
    assert [m["content"] for m in messages[1::2]] == ["SUPPORTS", "NOT_ENOUGH_INFO", "REFUTES"][:k]
    assert messages[-1]["content"].endswith(task.format_input(ex))
    assert not any(TRANSITION in m["content"] for m in messages)
    if k:
        assert messages[-1]["content"] == task.format_input(ex)


def test_too_many_shots(task, offline):
    with pytest.raises(InvalidParameter):
        task.shots(offline, 4)


# -- the original release --------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_local_release_counts(local, shared_data):
    sizes = {name: len(v) for name, v in local.splits.items()}
    # 7,675 pairs minus the 4 claims (20 pairs) that match the 3 fixed shots (one shot claim is in the release
    # twice, with different quoting)
    assert sizes == {"train": 4285, "validation": 1835, "test": 1535}
    assert sum(sizes.values()) == 7675 - 20
    assert "4 shot claims (20 pairs) excluded" in local.origin
    assert "not the hub split" in local.origin
    assert local.malformed.count == 0
    assert not local.synthetic
    assert local.content_hash == file_sha256([shared_data / "climate-fever" / "climate-fever.jsonl"])
    counts = {name: dict(Counter(ex.target for ex in v)) for name, v in local.splits.items()}
    assert counts == {
        "train": {"NOT_ENOUGH_INFO": 2751, "SUPPORTS": 1056, "REFUTES": 478},
        "validation": {"NOT_ENOUGH_INFO": 1128, "SUPPORTS": 524, "REFUTES": 183},
        "test": {"NOT_ENOUGH_INFO": 1039, "SUPPORTS": 358, "REFUTES": 138},
    }
    total = sum(sizes.values())
    for name, share in (("train", 0.56), ("validation", 0.24), ("test", 0.20)):
        assert abs(sizes[name] / total - share) < 0.005


@pytest.mark.shared_data
def test_local_release_split_by_claim(local):
    claims_of = {name: {ex.meta["claim_id"] for ex in v} for name, v in local.splits.items()}
    assert {k: len(v) for k, v in claims_of.items()} == {"train": 857, "validation": 367, "test": 307}
    assert not claims_of["train"] & claims_of["validation"]
    assert not claims_of["train"] & claims_of["test"]
    assert not claims_of["validation"] & claims_of["test"]
    per_claim = Counter(ex.meta["claim_id"] for v in local.splits.values() for ex in v)
    assert set(per_claim.values()) == {5}
    shot_claims = {climate_fever.normalize_claim(c) for c, _, _ in STUDY_SHOTS}
    assert not any(
        climate_fever.normalize_claim(ex.fields["claim"]) in shot_claims for v in local.splits.values() for ex in v
    )
    ids = [ex.id for v in local.splits.values() for ex in v]
    assert len(ids) == len(set(ids))
    assert {ex.target for v in local.splits.values() for ex in v} == set(LABELS)


@pytest.mark.shared_data
def test_local_release_paths_and_determinism(task, local, shared_data):
    folder = shared_data / "climate-fever"
    for path in (folder, folder / "climate-fever.jsonl"):
        again = task.load("local", path=path)
        assert again.content_hash == local.content_hash
        assert [ex.id for ex in again.split("test")] == [ex.id for ex in local.split("test")]
    with pytest.raises(InvalidParameter, match="climate-fever.jsonl"):
        task.load("local", path=shared_data / "mts-dialog")


def _release_row(claim_id, claim, evidences):
    return {
        "claim_id": claim_id,
        "claim": claim,
        "claim_label": "SUPPORTS",
        "evidences": [
            {
                "evidence_id": f"A:{i}",
                "evidence_label": label,
                "article": "A",
                "evidence": text,
                "entropy": 0.0,
                "votes": [],
            }
            for i, (label, text) in enumerate(evidences)
        ],
    }


def test_local_malformed_rows(task, tmp_path):
    rows = [
        json.dumps(
            _release_row("1", "Claim one.", [("SUPPORTS", "Ev a."), ("REFUTES", "Ev b."), ("NOT_ENOUGH_INFO", "Ev c.")])
        ),
        "{not json",
        json.dumps(_release_row("2", "Claim two.", [("SUPPORTS", "Ev d."), ("DISPUTED", "Ev e."), ("REFUTES", "   ")])),
        json.dumps({"claim_id": "3", "claim": "Claim three.", "evidences": [{"evidence": "no label"}]}),
        json.dumps({"claim_id": "4", "claim": "Claim four."}),
        "",
        json.dumps(
            _release_row(
                "5",
                "'Global warming' and 'climate change' mean different things and have both been used for decades.",
                [("REFUTES", "Shot claim evidence.")],
            )
        ),
    ]
    file = tmp_path / "climate-fever.jsonl"
    file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = task.load("local", path=tmp_path)
    assert sum(len(v) for v in data.splits.values()) == 4  # 3 from claim 1, 1 from claim 2
    m = data.malformed
    assert m.count == 5
    assert dict(m.reasons) == {
        "bad JSON": 1,
        "unknown evidence_label": 1,
        "empty evidence": 1,
        "missing evidence_label": 1,
        "missing evidences": 1,
    }
    assert m.example.startswith("bad JSON: line 2: {not json")
    assert "1 shot claims (1 pairs) excluded" in data.origin
    assert data.content_hash == file_sha256([file])


def test_local_missing_path(task, tmp_path):
    with pytest.raises(InvalidParameter, match="does not exist"):
        task.load("local", path=tmp_path / "nowhere")


def test_hub_offline_error(task, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailable) as info:
        task.load("hub")
    message = str(info.value)
    assert "amandakonet/climate_fever_adopted" in message
    assert "source='offline'" in message and "source='local'" in message


def test_unknown_options_and_sources(task):
    with pytest.raises(InvalidParameter, match="unknown option"):
        task.load("offline", colour="blue")
    with pytest.raises(InvalidParameter, match="data source"):
        task.load("web")


def test_offline_data_is_marked_synthetic(offline):
    assert offline.synthetic
    assert "SYNTHETIC" in offline.origin and "synthetic_claims" in offline.origin
    assert {k: len(v) for k, v in offline.splits.items()} == {"train": 600, "validation": 150, "test": 150}
    assert offline.provenance()["synthetic"] is True


# -- scoring ----------------------------------------------------------------------------------------------
def test_score_small(task):
    gold = ["SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO", "SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO"]
    replies = ["SUPPORTS", "refutes", "The answer is SUPPORTS", "SUPPORTS or REFUTES", "REFUTES", "not enough info"]
    parsed = [task.parse(r) for r in replies]
    assert parsed == ["SUPPORTS", "REFUTES", "SUPPORTS", INVALID, "REFUTES", "NOT_ENOUGH_INFO"]
    examples = [Example(str(i), {"claim": "c", "evidence": "e"}, g) for i, g in enumerate(gold)]
    metrics = task.score(examples, parsed, seed=0, n_resamples=200)
    assert metrics["accuracy"]["value"] == pytest.approx(4 / 6)
    assert metrics["invalid_rate"]["value"] == pytest.approx(1 / 6)
    expected_f1 = f1_score(gold, parsed, labels=list(LABELS), average="weighted", zero_division=0)
    assert metrics["f1_weighted"]["value"] == pytest.approx(expected_f1)
    assert metrics["accuracy"]["n"] == 6
    assert metrics["accuracy"]["ci_low"] <= metrics["accuracy"]["value"] <= metrics["accuracy"]["ci_high"]
    assert task.score(examples, parsed, seed=0, n_resamples=200) == metrics  # seeded
    with pytest.raises(InvalidParameter):
        task.score(examples, parsed[:-1])
