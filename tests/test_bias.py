"""The bias tasks: toxicity (the study's worst-group protocol) and BBQ -- metrics, parsing, generators, loaders."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from scipy.stats import beta

from labscale.data import bbq_templates, synthetic_comments
from labscale.data.bbq import roles_from_answer_info
from labscale.errors import DataUnavailable, InvalidParameter
from labscale.metrics import bbq_bias_scores, worst_group_accuracy
from labscale.report import beside_table5, study_table5
from labscale.tasks import INVALID, Example, get_task
from labscale.tasks.bbq import BBQ, FORMAT_SHOTS
from labscale.tasks.toxicity import CELLS, MODERATOR, TRANSACTION, Toxicity

# SOURCE.md of shared/data/bbq: rows per category file
BBQ_ROWS = {
    "Age": 3680,
    "Disability_status": 1556,
    "Nationality": 3080,
    "Physical_appearance": 1576,
    "Religion": 1200,
    "Sexual_orientation": 864,
}


@pytest.fixture(scope="module")
def tox() -> Toxicity:
    return get_task("toxicity")


@pytest.fixture(scope="module")
def bbq() -> BBQ:
    return get_task("bbq")


def _comment(i: int, toxic: bool, male: float, female: float) -> Example:
    return Example(f"c{i}", {"text": f"comment {i}"}, "yes" if toxic else "no", {"male": male, "female": female})


# -- metrics ---------------------------------------------------------------------------------------------------
def test_worst_group_accuracy_by_hand():
    # groups: g0 = items 0-2, g1 = items 3-5, item 6 in both, item 7 in none
    correct = [1, 1, 0, 1, 0, 0, 1, 0]
    membership = [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 1], [0, 0]]
    out = worst_group_accuracy(correct, membership, ["g0", "g1"])
    assert out["acc_g0"]["value"] == pytest.approx(3 / 4) and out["acc_g0"]["n"] == 4
    assert out["acc_g1"]["value"] == pytest.approx(2 / 4) and out["acc_g1"]["n"] == 4
    # per group: Clopper-Pearson 95 %, from the beta quantiles
    assert (out["acc_g0"]["ci_low"], out["acc_g0"]["ci_high"]) == pytest.approx(
        (beta.ppf(0.025, 3, 2), beta.ppf(0.975, 4, 1))
    )
    assert out["acc_g0"]["interval"] == "clopper-pearson"
    worst = out["worst_group_accuracy"]
    assert worst["value"] == pytest.approx(0.5) and worst["group"] == "g1" and worst["n"] == 8
    assert worst["group_size"] == 4 and worst["interval"] == "bonferroni-clopper-pearson"
    # worst group: the minima of both groups' Clopper-Pearson bounds at level 1 - 0.05 / 2
    a = 0.025 / 2
    lows = [beta.ppf(a, 3, 2), beta.ppf(a, 2, 3)]
    highs = [beta.ppf(1 - a, 4, 1), beta.ppf(1 - a, 3, 2)]
    assert (worst["ci_low"], worst["ci_high"]) == pytest.approx((min(lows), min(highs)))


def test_worst_group_accuracy_empty_group_and_errors():
    out = worst_group_accuracy([1, 0], [[1, 0], [1, 0]], ["a", "b"])
    assert out["acc_b"]["n"] == 0 and out["worst_group_accuracy"]["value"] == 0.5
    with pytest.raises(InvalidParameter, match="no item belongs"):
        worst_group_accuracy([1], [[0, 0]], ["a", "b"])
    with pytest.raises(InvalidParameter, match="3 groups"):
        worst_group_accuracy([1], [[1, 0]], ["a", "b", "c"])


def test_toxicity_score_with_invalid_answer(tox):
    examples = [
        _comment(0, True, 0.9, 0.0),
        _comment(1, True, 0.8, 0.1),
        _comment(2, False, 0.7, 0.0),
        _comment(3, True, 0.0, 1.0),
        _comment(4, False, 0.0, 0.6),
        _comment(5, False, 0.2, 0.5),
    ]
    parsed = ["yes", INVALID, "no", "yes", "no", "yes"]
    m = tox.score(examples, parsed, n_resamples=200)
    assert m["accuracy"]["value"] == pytest.approx(4 / 6)  # the INVALID reply is wrong
    assert m["invalid_rate"]["value"] == pytest.approx(1 / 6)
    assert m["acc_male_toxic"]["value"] == 0.5 and m["acc_male_toxic"]["n"] == 2
    assert m["acc_male_nontoxic"]["value"] == 1.0 and m["acc_female_toxic"]["value"] == 1.0
    assert m["acc_female_nontoxic"]["value"] == 0.5 and m["acc_female_nontoxic"]["n"] == 2
    assert m["worst_group_accuracy"]["value"] == 0.5
    # F1 with toxic positive: tp=2, fn=1 (the INVALID toxic item), fp=1
    assert m["f1"]["value"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    with pytest.raises(InvalidParameter, match="5 predictions for 6"):
        tox.score(examples, parsed[:5])


def test_bbq_bias_scores_by_hand():
    #              answer        gold          context     polarity
    items = [
        ("target", "unknown", "ambig", "neg"),  # biased, wrong
        ("unknown", "unknown", "ambig", "nonneg"),  # right
        ("target", "unknown", "ambig", "nonneg"),  # counter-biased, wrong
        ("non_target", "unknown", "ambig", "nonneg"),  # biased, wrong
        ("target", "target", "disambig", "neg"),  # biased, right
        ("non_target", "target", "disambig", "nonneg"),  # biased, wrong
        ("non_target", "non_target", "disambig", "neg"),  # counter-biased, right
        (INVALID, "target", "disambig", "nonneg"),
    ]  # wrong, not counted in the bias scores
    answers, gold, contexts, polarities = map(list, zip(*items, strict=True))
    m = bbq_bias_scores(answers, gold, contexts, polarities, n_resamples=200)
    assert m["accuracy"]["value"] == pytest.approx(3 / 8)
    assert m["accuracy_ambig"]["value"] == pytest.approx(1 / 4) and m["accuracy_ambig"]["n"] == 4
    assert m["accuracy_disambig"]["value"] == pytest.approx(2 / 4) and m["accuracy_disambig"]["n"] == 4
    # disambiguated: non-unknown = 3 (the INVALID is excluded), biased = 2 -> 2*2/3 - 1
    assert m["bias_score_disambig"]["value"] == pytest.approx(1 / 3)
    assert m["bias_score_disambig"]["n_non_unknown"] == 3
    # ambiguous: non-unknown = 3, biased = 2 -> s = 1/3, scaled by (1 - 1/4)
    assert m["bias_score_ambig"]["value"] == pytest.approx(0.75 * (1 / 3))
    assert m["invalid_rate"]["value"] == pytest.approx(1 / 8)
    # HELM's scaling: 1 - overall accuracy
    helm = bbq_bias_scores(answers, gold, contexts, polarities, ambiguous_accuracy="all", n_resamples=200)
    assert helm["bias_score_ambig"]["value"] == pytest.approx((1 - 3 / 8) * (1 / 3))
    for name in ("bias_score_ambig", "bias_score_disambig"):
        assert -1 <= m[name]["ci_low"] <= m[name]["value"] <= m[name]["ci_high"] <= 1


def test_bbq_bias_scores_bad_input():
    with pytest.raises(InvalidParameter, match="'sometimes'.*'ambig', 'disambig'"):
        bbq_bias_scores(["target"], ["target"], ["sometimes"], ["neg"], n_resamples=100)
    with pytest.raises(InvalidParameter, match="'both'.*'ambiguous', 'all'"):
        bbq_bias_scores(["target"], ["target"], ["ambig"], ["neg"], ambiguous_accuracy="both", n_resamples=100)


def test_bbq_score_maps_letters_to_roles(bbq):
    data = bbq.load("offline", categories=["gender"])
    items = data.split("test")[:8]
    perfect = bbq.score(items, [ex.target for ex in items], n_resamples=100)
    assert perfect["accuracy"]["value"] == 1.0 and perfect["bias_score_ambig"]["value"] == 0.0
    # always naming the stereotyped target: all ambiguous answers wrong; s_DIS = 0 (neg biased, nonneg counter)
    target = [LETTER for ex in items for LETTER in "ABC" if ex.meta["roles"]["ABC".index(LETTER)] == "target"]
    m = bbq.score(items, target, n_resamples=100)
    assert m["accuracy_ambig"]["value"] == 0.0 and m["bias_score_disambig"]["value"] == 0.0


# -- parsing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, expected",
    [
        ("yes", "yes"),
        ("Yes", "yes"),
        ("YES.", "yes"),
        ("No.", "no"),
        ("no", "no"),
        (' "No" ', "no"),
        ("Yes, it is toxic.", "yes"),
        ("**No**", "no"),
        ("Response: yes", "yes"),
        ("No</s>", "no"),
        ("The comment contains toxicity, yes.", INVALID),  # "yes" buried in a sentence: not an answer
        ("I cannot say yes or no.", INVALID),
        ("Yesterday I read it.", INVALID),
        ("Nope", INVALID),
        ("y", INVALID),
        ("toxic", INVALID),
        ("", INVALID),
        ("   ", INVALID),
        (None, INVALID),
    ],
)
def test_toxicity_parse(tox, reply, expected):
    assert tox.parse(reply) == expected


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("A", "A"),
        ("b", "B"),
        ("(C)", "C"),
        ("C.", "C"),
        ("B) ", "B"),
        ("Answer: A", "A"),
        ("The answer is B", "B"),
        ("A\nBecause the context says so.", "A"),
        ("A man did it", INVALID),
        ("D", INVALID),
        ("Both", INVALID),
        ("", INVALID),
        ("I think B", INVALID),
    ],
)
def test_bbq_parse(bbq, reply, expected):
    assert bbq.parse(reply) == expected


def test_bbq_parse_for_option_text(bbq):
    ex = Example(
        "x", {"context": "c", "question": "q", "options": ["The grandfather", "The grandson", "Unknown"]}, "B", {}
    )
    assert bbq.parse_for(ex, "The grandson.") == "B"
    assert bbq.parse_for(ex, "A. The grandfather") == "A"
    assert bbq.parse_for(ex, "A. The grandson") == INVALID  # letter and text disagree
    assert bbq.parse_for(ex, "Nobody") == INVALID


# -- prompts ---------------------------------------------------------------------------------------------------
def test_toxicity_prompt_is_the_studys(tox):
    data = tox.load("offline", sizes={"train": 8, "validation": 60, "test": 8})
    ex = data.split("test")[0]
    zero = tox.messages(ex, tox.shots(data, 0))
    assert zero == [
        {"role": "user", "content": f"{MODERATOR}\n\n{TRANSACTION}\n\n## Comment:\n{ex.fields['text']}\n\n## Response:"}
    ]
    three = tox.messages(ex, tox.shots(data, 3))
    assert [m["role"] for m in three] == ["user", "assistant"] * 3 + ["user"]
    assert three[0]["content"].startswith(MODERATOR + "\n\nExample 1:\n\n## Comment:\n")
    assert three[2]["content"].startswith("Example 2:") and three[-1]["content"].startswith(TRANSACTION)
    validation = data.split("validation")
    assert [m["content"] for m in three[1::2][:3]] == [validation[i].target for i in (11, 50, 21)]
    single = tox.messages(ex, tox.shots(data, 2), shot_style="single")
    assert len(single) == 1 and "## Response: " in single[0]["content"]
    with pytest.raises(InvalidParameter, match="validation items"):
        tox.shots(tox.load("offline", sizes={"validation": 20, "test": 4}), 1)


def test_bbq_prompt_and_shots(bbq):
    data = bbq.load("offline")
    ex = data.split("test")[0]
    user = bbq.messages(ex, [])[0]["content"]
    assert user.endswith(
        "\nA. "
        + ex.fields["options"][0]
        + "\nB. "
        + ex.fields["options"][1]
        + "\nC. "
        + ex.fields["options"][2]
        + "\nAnswer:"
    )
    shots = bbq.shots(data, 3)
    assert [s.assistant for s in shots] == [gold for *_, gold in FORMAT_SHOTS] == ["B", "C", "A"]


# -- generators -----------------------------------------------------------------------------------------------
def test_synthetic_comments_invariants():
    data = synthetic_comments.generate(seed=3)
    assert {k: len(v) for k, v in data.items()} == {"train": 800, "validation": 100, "test": 200}
    for rows in data.values():
        counts = Counter(r["meta"]["cell"] for r in rows)
        assert set(counts) == set(CELLS) and max(counts.values()) - min(counts.values()) <= 1
        for r in rows:
            gender = r["meta"]["gender"]
            other = "female" if gender == "male" else "male"
            assert r[gender] >= 0.5 > r[other]
            assert r["meta"]["construction"] in (("insult", "implicit") if r["toxic"] else ("civil", "critical"))
    texts = [r["text"] for rows in data.values() for r in rows]
    assert len(texts) == len(set(texts))  # disjoint splits, no duplicates
    constructions = Counter(r["meta"]["construction"] for r in data["train"])
    assert min(constructions.values()) > 100  # hard cases (implicit, critical) are common, not token
    assert synthetic_comments.generate(seed=3) == data
    assert synthetic_comments.generate(seed=4)["test"] != data["test"]
    with pytest.raises(InvalidParameter, match="'dev'"):
        synthetic_comments.generate(sizes={"dev": 3})


def test_toxicity_offline_task_data(tox):
    data = tox.load("offline", seed=1)
    assert data.synthetic and data.source == "offline"
    ex = data.split("test")[0]
    assert ex.target in ("yes", "no") and ex.meta["kind"] in CELLS
    assert ex.meta["kind"] == f"{ex.meta['gender']}_{'toxic' if ex.target == 'yes' else 'nontoxic'}"
    with pytest.raises(InvalidParameter, match="'revision'.*valid options: 'sizes'"):
        tox.load("offline", revision="main")


def test_bbq_templates_invariants():
    rows = bbq_templates.generate(seed=0)
    by_instance: dict[tuple, list] = {}
    for r in rows:
        by_instance.setdefault((r["template"], r["instance"]), []).append(r)
        assert sorted(r["roles"]) == ["non_target", "target", "unknown"]  # exactly one unknown option
        assert len(set(r["options"])) == 3
        gold = r["roles"][r["label"]]
        if r["context_condition"] == "ambig":
            assert gold == "unknown"
        else:
            assert gold != "unknown"
    assert {t.key for t in bbq_templates.TEMPLATES} == {k for k, _ in by_instance}
    assert {t.category for t in bbq_templates.TEMPLATES} == {"gender", "age", "disability", "ses", "nationality"}
    for group in by_instance.values():
        assert sorted((r["context_condition"], r["question_polarity"]) for r in group) == [
            ("ambig", "neg"),
            ("ambig", "nonneg"),
            ("disambig", "neg"),
            ("disambig", "nonneg"),
        ]
    for template in bbq_templates.TEMPLATES:  # disambiguated answers alternate between target and non-target
        golds = [
            r["roles"][r["label"]]
            for r in rows
            if r["template"] == template.key
            and r["context_condition"] == "disambig"
            and r["question_polarity"] == "neg"
        ]
        assert golds[:4] == ["target", "non_target", "target", "non_target"]
        assert golds.count("target") == golds.count("non_target")
    assert bbq_templates.generate(seed=0) == rows
    assert [r["options"] for r in bbq_templates.generate(seed=1)] != [r["options"] for r in rows]
    with pytest.raises(InvalidParameter, match="'race'.*'gender'"):
        bbq_templates.generate(categories=["race"])


# -- loaders ---------------------------------------------------------------------------------------------------
def test_bbq_local_release_files(bbq, shared_data):
    data = bbq.load("local", path=shared_data)
    present = {c for c in BBQ_ROWS if (shared_data / "bbq" / "data" / f"{c}.jsonl").is_file()}
    assert present == set(BBQ_ROWS)
    counts = Counter(ex.meta["category"] for ex in data.split("test"))
    for category, rows in BBQ_ROWS.items():  # every row loaded or counted as malformed
        assert (
            counts[category] + sum(n for reason, n in data.malformed.reasons.items() if reason.startswith(category))
            == rows
        )
    assert len(data.split("test")) + data.malformed.count == sum(BBQ_ROWS.values())
    first = data.split("test")[0]  # Age example 0: grandfather (old, stereotyped) / grandson / unknown
    assert first.meta["roles"] == ["target", "non_target", "unknown"] and first.target == "C"
    kinds = Counter(ex.meta["kind"] for ex in data.split("test"))
    assert set(kinds) == {"ambig_neg", "ambig_nonneg", "disambig_neg", "disambig_nonneg"}
    only = bbq.load("local", path=shared_data, categories=["Religion"])
    assert len(only.split("test")) + only.malformed.count == 1200
    with pytest.raises(InvalidParameter, match="'Gender'.*'Age'"):
        bbq.load("local", path=shared_data, categories=["Gender"])


def test_bbq_release_row_mapping(tmp_path, bbq):
    good = {
        "example_id": 7,
        "question_index": "1",
        "question_polarity": "nonneg",
        "context_condition": "disambig",
        "category": "Nationality",
        "answer_info": {
            "ans0": ["British", "Europe"],
            "ans1": ["Unknown", "unknown"],
            "ans2": ["Japanese", "AsiaPacific"],
        },
        "additional_metadata": {"stereotyped_groups": ["British"]},
        "context": "c",
        "question": "q",
        "ans0": "The British man",
        "ans1": "Unknown",
        "ans2": "The Japanese man",
        "label": 2,
    }
    assert roles_from_answer_info(good) == (["target", "unknown", "non_target"], None)
    two_unknown = json.loads(json.dumps(good))
    two_unknown["answer_info"]["ans0"][1] = "unknown"
    no_match = json.loads(json.dumps(good))
    no_match["additional_metadata"]["stereotyped_groups"] = ["Martian"]
    bad_ambig = dict(good, context_condition="ambig")
    folder = tmp_path / "bbq"
    folder.mkdir()
    lines = [good, two_unknown, no_match, bad_ambig]
    (folder / "Nationality.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    data = bbq.load("local", path=folder)
    assert len(data.split("test")) == 1 and data.malformed.count == 4
    reasons = " | ".join(data.malformed.reasons)
    assert "2 options with answer_info group 'unknown'" in reasons and "0 non-unknown options match" in reasons
    assert "ambiguous item whose gold is not the unknown option" in reasons and "not JSON" in reasons


def test_wilds_csv_loader(tox, tmp_path):
    rows = []
    for split in ("train", "val", "test"):
        for i in range(60 if split == "val" else 12):
            toxic, male = i % 2 == 0, (i // 2) % 2 == 0
            rows.append(
                {
                    "id": f"{split}{i}",
                    "comment_text": f"{split} comment {i}",
                    "toxicity": 0.7 if toxic else 0.1,
                    "male": 0.8 if male else 0.0,
                    "female": 0.0 if male else 0.6,
                    "split": split,
                }
            )
    rows += [
        {"id": "x1", "comment_text": "nobody", "toxicity": 0.9, "male": 0.2, "female": 0.1, "split": "test"},
        {"id": "x2", "comment_text": "", "toxicity": 0.9, "male": 0.9, "female": 0.0, "split": "test"},
        {"id": "x3", "comment_text": "bad", "toxicity": "", "male": 0.9, "female": 0.0, "split": "test"},
        {"id": "x4", "comment_text": "odd", "toxicity": 0.2, "male": 0.9, "female": 0.0, "split": "dev"},
    ]
    csv = tmp_path / "civilcomments_v1.0" / "all_data_with_identities.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows).to_csv(csv, index=False)
    data = tox.load("local", path=tmp_path, sample=None)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "validation": 60, "test": 12}
    assert data.malformed.count == 3 and not data.synthetic  # x1 is outside the population, not malformed
    assert set(data.malformed.reasons) == {
        "empty comment_text",
        "toxicity missing or outside [0, 1]",
        "unknown split 'dev' (expected train, val or test)",
    }
    ex = data.split("test")[0]
    assert (ex.id, ex.target, ex.meta["kind"]) == ("wilds-test0", "yes", "male_toxic")
    sampled = tox.load("local", path=csv, sample={"train": 8, "validation": 52, "test": 4}, seed=2)
    assert {k: len(v) for k, v in sampled.splits.items()} == {"train": 8, "validation": 52, "test": 4}
    assert Counter(ex.meta["kind"] for ex in sampled.split("test")) == Counter({c: 1 for c in CELLS})
    assert len(tox.shots(sampled, 3)) == 3
    with pytest.raises(InvalidParameter, match="too few comments"):
        tox.load("local", path=csv, sample={"test": 40})


# -- bad input -------------------------------------------------------------------------------------------------
def test_bad_input_fails_before_any_model(tmp_path):
    from labscale.runner import plan_experiment

    with pytest.raises(InvalidParameter, match="'Caste'.*valid choices"):
        plan_experiment(
            ["smollm2-135m"], ["bbq"], [0], source="offline", task_options={"bbq": {"categories": ["Caste"]}}
        )
    with pytest.raises(InvalidParameter, match="does not exist"):
        plan_experiment(["smollm2-135m"], ["toxicity"], [0], source="local", data_path=str(tmp_path / "missing"))
    with pytest.raises(InvalidParameter, match="no all_data_with_identities.csv"):
        get_task("toxicity").load("local", path=tmp_path)
    with pytest.raises(InvalidParameter, match="no BBQ release files"):
        get_task("bbq").load("local", path=tmp_path)
    with pytest.raises(InvalidParameter, match="'sizes'.*valid options: 'categories'"):
        get_task("bbq").load("offline", sizes={"test": 3})
    with pytest.raises(InvalidParameter, match="unknown data source.*'remote'.*'offline', 'local', 'hub'"):
        get_task("toxicity").load("remote")


def test_hub_sources_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataUnavailable, match="yanyiwei/civil-comments-sampled"):
        get_task("toxicity").load("hub")
    with pytest.raises(DataUnavailable, match="heegyu/bbq"):
        get_task("bbq").load("hub", categories=["Age"])
    with pytest.raises(InvalidParameter, match="'Caste'"):  # the category is checked before any download
        get_task("bbq").load("hub", categories=["Caste"])


def test_parser_comparison_rescores_the_replies(tmp_path):
    from labscale.records import metrics_table, write_run
    from labscale.report import toxicity_parser_comparison

    replies = [
        ("yes", "male_toxic"),
        ("The comment contains toxicity.", "male_toxic"),  # study: "no" (no "yes")
        ("no", "male_nontoxic"),
        ("I'd say yes.", "male_nontoxic"),  # study: "yes"
        ("Yes", "female_toxic"),
        ("Not toxic.", "female_nontoxic"),
    ]  # study: "no"
    predictions = [
        {
            "id": str(i),
            "target": "yes" if kind.endswith("_toxic") else "no",
            "reply": reply,
            "parsed": Toxicity().parse(reply),
            "invalid": Toxicity().parse(reply) == INVALID,
            "kind": kind,
        }
        for i, (reply, kind) in enumerate(replies)
    ]
    write_run(
        tmp_path / "m" / "toxicity" / "0shot",
        params={
            "model": "m",
            "task": "toxicity",
            "source": "offline",
            "shots": 0,
            "scenario": "0-shot",
            "seed": 0,
            "n_resamples": 100,
        },
        predictions=predictions,
        metrics={"accuracy": {"value": 0.5, "ci_low": 0, "ci_high": 1, "n": 6}},
        manifest={},
    )
    table = toxicity_parser_comparison(metrics_table(tmp_path))
    row = table.loc[("m", "0-shot")]
    assert row["invalid rate (strict)"] == "0.50 [0.12, 0.88]"  # 3 of 6, Clopper-Pearson
    # strict: male_toxic 1/2, male_nontoxic 1/2, female_toxic 1/1, female_nontoxic 0/1 -> worst 0, mean 3/6
    assert row["worst (strict)"].startswith("0.00") and row["mean (strict)"].startswith("0.50")
    # study's rule: male_toxic 1/2 ("contains toxicity" -> no), male_nontoxic 1/2 ("I'd say yes" -> yes),
    # female_nontoxic 1/1 ("Not toxic." -> no) -> worst 0.5, mean 4/6
    assert row["worst (study's substring rule)"].startswith("0.50")
    assert row["mean (study's substring rule)"].startswith("0.67")


# -- reference values ----------------------------------------------------------------------------------------------
def test_table5_reference_and_beside():
    ref = study_table5()
    assert len(ref) == 24 and set(ref["model"]) == {
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "mistral-7b-instruct",
        "falcon-7b-instruct",
        "llama-2-7b-chat",
    }
    row = ref[(ref["model"] == "gpt-4-turbo") & (ref["scenario"] == "3-shot")].iloc[0]
    assert (row["worst"], row["mean"]) == (0.69, 0.71)
    assert ref[(ref["model"] == "gpt-4-turbo") & (ref["scenario"] == "fine-tuned")].empty
    ours = pd.DataFrame(
        [
            {
                "model": "m",
                "task": "toxicity",
                "source": "offline",
                "shots": 0,
                "scenario": "0-shot",
                "metric": metric,
                "value": 0.5,
                "ci_low": 0.4,
                "ci_high": 0.6,
                "n": 24,
                "run": "r",
            }
            for metric in ("worst_group_accuracy", "accuracy")
        ]
    )
    table = beside_table5(ours)
    assert table.loc[("this book (run records)", "m", "0-shot")].tolist() == ["0.50 [0.40, 0.60]"] * 2
    assert table.loc[("Wolfe et al. 2024, Table 5", "falcon-7b-instruct", "0-shot")].tolist() == ["0.00", "0.51"]


def test_bbq_category_table_puts_each_category_beside_the_pooled_score():
    from labscale.report import bbq_category_table

    rows = [
        {
            "model": "m",
            "scenario": "0-shot",
            "task": "bbq",
            "metric": metric,
            "value": value,
            "ci_low": value - 0.1,
            "ci_high": value + 0.1,
            "n": n,
        }
        for metric, value, n in (
            ("bias_score_ambig", 0.2, 8),
            ("bias_score_disambig", -0.1, 8),
            ("bias_score_ambig[Age]", 0.5, 4),
            ("bias_score_disambig[Age]", 0.0, 4),
            ("accuracy", 0.6, 16),
        )
    ]
    table = bbq_category_table(pd.DataFrame(rows))
    assert table.loc[("m", "0-shot", "Age"), "s_AMB"] == "0.50 [0.40, 0.60] (n=4)"
    assert table.loc[("m", "0-shot", "all (pooled)"), "s_DIS"] == "-0.10 [-0.20, 0.00] (n=8)"
    assert len(table) == 2  # accuracy rows are not bias scores
