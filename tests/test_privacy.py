"""Privacy: the MedQA true/false task and its offline patient records, membership-inference and exposure metrics
against hand-computed values, DP fine-tuning with Opacus and the leakage audit on the embedded model."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from labscale import privacy
from labscale.errors import InvalidParameter
from labscale.metrics import (
    canary_exposure,
    membership_advantage,
    membership_metrics,
    roc_auc,
    skewnorm_moments_fit,
    tpr_at_fpr,
)
from labscale.privacy import epsilon_label, make_canaries, parse_epsilon
from labscale.tasks import INVALID, get_task


# -- metrics ----------------------------------------------------------------------------------------------------
def test_auroc_by_hand_with_ties():
    # positives 0.9, 0.3; negatives 0.8, 0.2: pairs won 0.9>0.8, 0.9>0.2, 0.3>0.2; lost 0.3<0.8 -> 3/4
    assert roc_auc([0.9, 0.8, 0.3, 0.2], [1, 0, 1, 0]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: pairs (0.5,0.5)=0.5, (0.5,0.1)=1 -> 0.75
    assert roc_auc([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.75)
    assert roc_auc([1, 2], [1, 1]) == 0.5  # one class only


def test_tpr_at_fixed_fpr_by_hand():
    scores = [0.95, 0.9, 0.85, 0.7, 0.6, 0.4, 0.3, 0.2]
    labels = [1, 0, 1, 1, 0, 1, 0, 0]
    # 4 negatives: FPR 0.01 admits no negative -> threshold = the top negative 0.9 -> only 0.95 passes: 1/4
    assert tpr_at_fpr(scores, labels, 0.01) == pytest.approx(0.25)
    # FPR 0.25 admits one negative -> threshold = second negative 0.6 -> 0.95, 0.85, 0.7 pass: 3/4
    assert tpr_at_fpr(scores, labels, 0.25) == pytest.approx(0.75)
    assert tpr_at_fpr(scores, labels, 1.0) == 1.0


def test_membership_advantage_by_hand_and_against_every_threshold():
    scores = [0.95, 0.9, 0.85, 0.7, 0.6, 0.4, 0.3, 0.2]
    labels = [1, 0, 1, 1, 0, 1, 0, 0]
    # threshold 0.7: members 0.95, 0.85, 0.7 pass (3/4), non-members 0.9 (1/4) -> 0.5, the best of the 8
    assert membership_advantage(scores, labels) == 0.5
    assert membership_advantage([1, 2], [1, 1]) == 0.0  # one class only
    rng = np.random.default_rng(3)
    for _ in range(20):  # ties included: scores drawn from 12 values
        s, y = rng.integers(0, 12, size=40).astype(float), rng.random(40) < 0.4
        by_threshold = max(np.mean(s[y] >= t) - np.mean(s[~y] >= t) for t in np.unique(s))
        assert membership_advantage(s, y) == by_threshold  # the same floats, not only close


def test_membership_metrics_perfect_and_random_attacks():
    perfect = membership_metrics([5, 6, 7, 1, 2, 3], [True, True, True, False, False, False], n_resamples=200)
    assert perfect["auroc"]["value"] == 1.0 and perfect["tpr_at_0pct_fpr"]["value"] == 1.0
    assert perfect["advantage"]["value"] == 1.0 and perfect["auroc"]["members"] == 3
    rng = np.random.default_rng(0)
    noise = membership_metrics(rng.normal(size=400), [True] * 200 + [False] * 200, n_resamples=200)
    assert noise["auroc"]["ci_low"] < 0.5 < noise["auroc"]["ci_high"]
    with pytest.raises(InvalidParameter, match="members and non-members"):
        membership_metrics([1, 2], [True, True])


def test_skew_normal_moment_fit_recovers_parameters():
    from scipy.stats import skewnorm

    sample = skewnorm.rvs(3.0, loc=10.0, scale=2.0, size=200_000, random_state=1)
    shape, loc, scale = skewnorm_moments_fit(sample)
    assert shape == pytest.approx(3.0, rel=0.15) and loc == pytest.approx(10.0, abs=0.1)
    assert scale == pytest.approx(2.0, rel=0.05)


def test_exposure_at_the_median_is_one_bit_and_is_capped():
    rng = np.random.default_rng(0)
    candidates = rng.normal(40.0, 4.0, 5000)
    median = canary_exposure(float(np.median(candidates)), candidates, 10**6, n_resamples=100)
    assert median["value"] == pytest.approx(1.0, abs=0.05)  # half of R is at least as likely
    memorised = canary_exposure(1.0, candidates, 10**6, n_resamples=100)
    assert memorised["value"] == pytest.approx(math.log2(10**6)) and memorised["sampled_rank"] == 1
    unlikely = canary_exposure(80.0, candidates, 10**6, n_resamples=100)
    assert unlikely["value"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InvalidParameter, match="at least 10"):
        canary_exposure(1.0, [1.0, 2.0], 100)


# -- parameters and canaries ------------------------------------------------------------------------------------
def test_epsilons_and_canaries_are_validated():
    assert parse_epsilon("inf") == math.inf and parse_epsilon(None) == math.inf and parse_epsilon(0.5) == 0.5
    assert epsilon_label(math.inf) == "eps=inf" and epsilon_label(20.0) == "eps=20"
    for bad in (0, -1, "big", True):
        with pytest.raises(InvalidParameter, match="epsilon"):
            parse_epsilon(bad)
    canaries = make_canaries([1, 4, 16], digits=6, seed=3)
    assert [c.repetitions for c in canaries] == [1, 4, 16]
    assert len({c.prefix for c in canaries}) == 3
    assert all(len(c.secret.strip(" .").split()) == 6 for c in canaries)
    assert make_canaries([1, 4, 16], digits=6, seed=3) == canaries
    with pytest.raises(InvalidParameter, match="canary repetitions"):
        make_canaries([0])


# -- the task and its data --------------------------------------------------------------------------------------
def test_true_false_parsing_is_strict():
    task = get_task("medqa_tf")
    assert task.parse("True") == "True" and task.parse(" false.") == "False"
    assert task.parse("TRUE, the record says so") == "True"
    for reply in ("True or False", "It is true", "Falsely", "", "Maybe"):
        assert task.parse(reply) == INVALID


def test_synthetic_patient_records_hold_their_labels():
    from labscale.data import synthetic_patients

    data = synthetic_patients.generate(seed=0, sizes={"train": 60, "validation": 20, "test": 20})
    people = {split: {r["meta"]["ssn"] for r in rows} for split, rows in data.items()}
    assert not (people["train"] & people["test"]) and not (people["train"] & people["validation"])
    for rows in data.values():
        assert Counter(r["label"] for r in rows)["True"] == len(rows) // 2
        for r in rows:
            in_record = r["option"] in r["record"]
            assert in_record if r["label"] == "True" else not (r["meta"]["field"] != "suburb" and in_record)
    assert synthetic_patients.generate(seed=0, sizes={"train": 60, "validation": 20, "test": 20}) == data


@pytest.mark.shared_data
def test_local_medqa_release_reduced_to_true_false(shared_data):
    task = get_task("medqa_tf")
    data = task.load("local", path=shared_data)
    sizes = data.provenance()["sizes"]
    assert sum(sizes.values()) == 1273 and data.malformed.count == 0
    assert sizes["train"] > sizes["validation"] > 200
    labels = Counter(ex.target for split in data.splits.values() for ex in split)
    assert abs(labels["True"] - labels["False"]) < 100
    first = json.loads((shared_data / "medqa/US/4_options/phrases_no_exclude_test.jsonl").read_text().splitlines()[0])
    match = [ex for split in data.splits.values() for ex in split if ex.fields["question"] == first["question"]]
    assert len(match) == 1
    ex = match[0]
    assert (ex.fields["option"] == first["answer"]) == (ex.target == "True")
    assert ex.fields["option"] in first["options"].values()


# -- DP fine-tuning and the audit on the embedded model ---------------------------------------------------------
def _tiny_config(**overrides):
    from labscale.finetune import FinetuneConfig

    return FinetuneConfig.preset(
        "cpu",
        **{
            "train_fraction": 12 / 400,
            "per_device_batch_size": 4,
            "epochs": 1,
            "top_layers": 2,
            "r": 4,
            "alpha": 8,
            "max_length": 256,
            "completion_only_loss": False,
            "warmup_steps": 1,
            **overrides,
        },
    )


def test_bad_dp_settings_fail_before_training(tmp_path):
    from labscale.privacy import dp_finetune

    with pytest.raises(InvalidParameter, match="whole number"):
        dp_finetune("smollm2-135m", "medqa_tf", epsilon=1, config=_tiny_config(epochs=1.5), output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="load_in_4bit"):
        dp_finetune("smollm2-135m", "medqa_tf", epsilon=1, config=_tiny_config(load_in_4bit=True), output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match=r"precision='bf16'.*valid: 'auto' or 'fp32'"):
        dp_finetune("smollm2-135m", "medqa_tf", epsilon=1, config=_tiny_config(precision="bf16"), output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="epsilon"):
        dp_finetune("smollm2-135m", "medqa_tf", epsilon=-2, config=_tiny_config(), output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="task"):
        dp_finetune("smollm2-135m", "medqa", epsilon=1, config=_tiny_config(), output_dir=tmp_path)
    # a sweep checks every epsilon, the task, the config and the model before its first run trains
    from labscale.privacy import dp_sweep

    for bad, message in (
        ({"epsilons": [1, -2]}, "epsilon"),
        ({"task": "medqa"}, "task"),
        ({"config": _tiny_config(epochs=1.5)}, "whole number"),
        ({"config": object()}, "FinetuneConfig"),
        ({"base_model": "gpt-3.5-turbo"}, "API model"),
    ):
        call = {"base_model": "smollm2-135m", "task": "medqa_tf", "epsilons": [1], "config": _tiny_config(), **bad}
        with pytest.raises(InvalidParameter, match=message):
            dp_sweep(call["base_model"], call["task"], call["epsilons"], config=call["config"], output_root=tmp_path)
    assert not any(tmp_path.iterdir())


def _tiny_peft(config_class, model_class, **extra):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    options = dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    model = model_class(config_class(**options, **extra)).eval()
    return get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))


def test_example_losses_run_the_head_on_weighted_positions_only_and_equal_the_full_logits():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from labscale.finetune.trunk import right_padded

    model = _tiny_peft(LlamaConfig, LlamaForCausalLM)
    ids, attention = right_padded([[3, 5, 7, 9, 11, 2], [4, 6, 8], [10, 12, 14, 16]], 0)
    weights = attention.float()
    weights[2, :2] = 0  # a completion-only row: the prompt's positions carry no loss
    losses = privacy._example_losses(model, ids, attention, weights)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()  # every position, padding too
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    w = weights[:, 1:]
    torch.testing.assert_close(losses, (nll * w).sum(1) / w.sum(1), rtol=1e-6, atol=1e-6)
    privacy._check_plain_head(model, [3, 5, 7, 9])  # a Llama's logits are its head on the last hidden state


def test_a_model_whose_logits_are_soft_capped_is_refused_for_dp():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    model = _tiny_peft(Gemma2Config, Gemma2ForCausalLM, head_dim=8, num_key_value_heads=2, final_logit_softcapping=0.5)
    with pytest.raises(InvalidParameter, match="not its output head"):
        privacy._check_plain_head(model, [3, 5, 7, 9])


@pytest.mark.slow
def test_dp_sweep_and_leakage_audit_end_to_end(embedded_model_dir, tmp_path):
    from labscale.privacy import dp_summary, dp_sweep, leakage_audit

    canaries = make_canaries([1, 8], digits=4)
    results = dp_sweep(
        "smollm2-135m",
        "medqa_tf",
        [2.0, "inf"],
        config=_tiny_config(),
        output_root=tmp_path / "a",
        canaries=canaries,
        delta=1e-3,
    )
    summary = dp_summary(results).set_index("adapter")
    private, public = results["eps=2"].model_card["privacy"], results["eps=inf"].model_card["privacy"]
    assert private["noise_multiplier"] > 0.5 and 0 < private["epsilon_spent"] <= 2.0 + 1e-6
    assert public["noise_multiplier"] == 0.0 and public["epsilon_spent"] == "inf"
    assert summary.loc["eps=2", "rows (incl. canaries)"] == 12 + 9
    card_text = (results["eps=2"].adapter_dir / "README.md").read_text()
    assert "DP-SGD" in card_text and "noise multiplier" in card_text
    # the fine-tuning card, with the privacy section and the canaries added
    card = results["eps=2"].model_card
    assert card["kind"] == "dp_lora" and card["data"]["canary_rows"] == 9 and len(card["canaries"]) == 2
    assert card["use"]["model"] == "smollm2-135m?adapter=<adapter>" and "smollm2-135m?adapter=<adapter>" in card_text
    assert card["lora"]["layers"] == [28, 29] and card["steps"]["samples"] == 21
    again = dp_sweep(
        "smollm2-135m",
        "medqa_tf",
        [2.0],
        config=_tiny_config(),
        output_root=tmp_path / "a",
        canaries=canaries,
        delta=1e-3,
    )
    assert again["eps=2"].reused

    table = leakage_audit(
        "smollm2-135m",
        {k: r.adapter_dir for k, r in results.items()},
        output_dir=tmp_path / "audit",
        n_candidates=20,
        n_resamples=100,
        progress=False,
    )
    assert set(table["model"]) == {"base", "eps=2", "eps=inf"}
    auroc = table[table["metric"] == "auroc"]
    assert auroc["value"].between(0, 1).all() and len(auroc) == 3 * 3 + 2  # the base has no reference attack
    exposure = table[table["audit"] == "canary"]
    assert len(exposure) == 3 * 2 and exposure["value"].between(0, math.log2(10**4) + 1e-9).all()
    record = json.loads((tmp_path / "audit" / "eps-2" / "manifest.json").read_text())
    assert record["data"]["members"] == 12 and record["data"]["non_members"] == 12
    # an identical audit is read back from its records (no model is scored again), with the same numbers
    again = leakage_audit(
        "smollm2-135m",
        {k: r.adapter_dir for k, r in results.items()},
        output_dir=tmp_path / "audit",
        n_candidates=20,
        n_resamples=100,
        progress=False,
    )
    assert again["value"].tolist() == table["value"].tolist()
    assert (
        json.loads((tmp_path / "audit" / "eps-2" / "manifest.json").read_text())["written_at"] == record["written_at"]
    )


@pytest.mark.slow
def test_frozen_trunk_trains_the_same_adapter_as_the_full_pass(embedded_model_dir, tmp_path):
    """The trunk below the adapted layers computed once gives the same DP run as the whole model at every step:
    the same losses, and adapters equal to rounding (Opacus's noise and the sampling draw the same random
    numbers either way)."""
    import torch
    from safetensors.torch import load_file

    from labscale.privacy import dp_finetune

    runs = {}
    for frozen in (True, False):
        runs[frozen] = dp_finetune(
            "smollm2-135m",
            "medqa_tf",
            epsilon=2.0,
            config=_tiny_config(),
            output_dir=tmp_path / str(frozen),
            delta=1e-3,
            frozen_trunk=frozen,
        )
    fast, full = runs[True].model_card, runs[False].model_card
    assert fast["resolved"]["frozen_trunk_layers"] == 28 and full["resolved"]["frozen_trunk_layers"] == 0
    fast, full = fast["train_loss"]["history"], full["train_loss"]["history"]
    assert [h["batch"] for h in fast] == [h["batch"] for h in full] and len(fast) == 3
    assert [h["loss"] for h in fast] == pytest.approx([h["loss"] for h in full], rel=1e-4)
    a, b = (load_file(runs[f].adapter_dir / "adapter_model.safetensors") for f in (True, False))
    assert a.keys() == b.keys() and any("layers.28" in k for k in a)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4), key


def test_audit_comparisons_pair_the_same_rows(tmp_path):
    from labscale import records
    from labscale.metrics import roc_auc
    from labscale.privacy import audit_comparisons

    rng = np.random.default_rng(0)
    member = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    runs = {}
    for label, shift in (("base", 0.0), ("eps=inf", 1.5)):
        loss = rng.normal(size=40) + shift * member
        rows = [
            {
                "id": f"r{i}",
                "member": bool(m),
                "loss": float(v),
                "zlib": float(v) / 2,
                "min_k": float(v),
                "nll": -float(v),
                "reference": float("nan") if label == "base" else float(v),
            }
            for i, (m, v) in enumerate(zip(member, loss, strict=True))
        ]
        rows.append({"id": "canary-1", "member": None, "nll": 1.0})  # canary rows carry no membership
        runs[label] = records.write_run(
            tmp_path / label, params={"model": label}, predictions=rows, metrics={}, manifest={}
        )
    audit = pd.DataFrame({"model": list(runs), "run": [str(r) for r in runs.values()]})
    out = audit_comparisons(audit, n_resamples=300)
    assert set(out["metric"]) == {"AUROC (loss)", "AUROC (zlib)", "AUROC (min_k)"}  # no reference for the base
    loss = out.set_index("metric").loc["AUROC (loss)"]
    base = records.read_run(runs["base"])["predictions"].iloc[:40]
    tuned = records.read_run(runs["eps=inf"])["predictions"].iloc[:40]
    assert loss["delta"] == pytest.approx(roc_auc(tuned["loss"], member) - roc_auc(base["loss"], member))
    assert loss["ci_low"] > 0 and loss["p_value"] < 0.05 and (out["p_holm"] >= out["p_value"]).all()
    # the test swaps within-model ranks: shifting one model's scores (another scale, same ranking) changes nothing
    shifted = records.read_run(runs["eps=inf"])
    rows = shifted["predictions"].to_dict("records")
    for row in rows[:40]:
        row["loss"] += 100.0
    records.write_run(runs["eps=inf"], params=shifted["params"], predictions=rows, metrics={}, manifest={})
    again = audit_comparisons(audit, n_resamples=300).set_index("metric").loc["AUROC (loss)"]
    assert again["p_value"] == loss["p_value"] and again["delta"] == pytest.approx(loss["delta"])
    with pytest.raises(InvalidParameter, match="valid choices: 'base', 'eps=inf'"):
        audit_comparisons(audit, baseline="eps=1")


def test_canary_table_lists_each_canary_once():
    canaries = privacy.make_canaries((1, 4), digits=3, seed=1)
    table = privacy.canary_table(canaries)
    assert list(table.index) == [c.id for c in canaries]
    assert list(table["repetitions"]) == [1, 4] and list(table["possible secrets"]) == [1000, 1000]
    assert table.iloc[0]["sentence"] == canaries[0].prefix + canaries[0].secret
