"""Data-size sweeps (labscale.sweep): learning curves from checkpoints and from fractions, on the embedded model;
reference lookups; and the checks that refuse an impossible sweep before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from labscale.errors import InvalidParameter
from labscale.finetune import FinetuneConfig, finetune, training_summary
from labscale.sweep import (
    CURVE_COLUMNS,
    check_fractions,
    checkpoint_curve,
    first_reaching,
    fraction_sweep,
    study_fig2,
    study_reference,
)

BASE = "smollm2-135m"
# 8 fact-checking examples, batch 2 -> 4 optimizer steps; a checkpoint every 4 samples (steps 2 and 4);
# LoRA on the top 2 layers only, so the whole fine-tune takes seconds on 2 cores
TINY = dict(
    r=4,
    alpha=8,
    train_fraction=8 / 600,
    max_length=256,
    warmup_steps=1,
    per_device_batch_size=2,
    checkpoint_every_samples=4,
    top_layers=2,
    seed=3,
)


def _curve(samples, values, lows, highs, metric="accuracy"):
    return pd.DataFrame(
        {"samples": samples, "value": values, "ci_low": lows, "ci_high": highs, "metric": metric, "model": "m"}
    )


def test_first_reaching_by_estimate_and_by_lower_bound():
    curve = _curve([0, 100, 200, 300], [0.30, 0.62, 0.70, 0.66], [0.2, 0.50, 0.61, 0.55], [0.4, 0.7, 0.8, 0.75])
    hit = first_reaching(curve, "accuracy", 0.6)
    assert hit["by_estimate"] == 100 and hit["by_lower_bound"] == 200
    assert hit["best_x"] == 200 and hit["best_value"] == 0.70 and hit["best_ci"] == (0.61, 0.8)
    never = first_reaching(curve, "accuracy", 0.9)
    assert never["by_estimate"] is None and never["by_lower_bound"] is None
    with pytest.raises(InvalidParameter, match=r"no metric 'f1'.*\['accuracy'\]"):
        first_reaching(curve, "f1", 0.5)


def test_study_references_are_the_published_values():
    assert study_reference("fact_checking", "accuracy") == 0.72  # GPT-4-Turbo 3-shot, Table 2
    assert study_reference("entity_resolution", "f1", scenario="0-shot") == 0.94
    with pytest.raises(InvalidParameter, match=r"model='gpt-5'.*models: \["):
        study_reference("fact_checking", "accuracy", model="gpt-5")
    right = study_fig2("right")
    mistral = right[right["model"] == "mistral-7b-instruct"].set_index("x")["value"]
    assert mistral[2000] == 0.71 and len(mistral) == 10 and right["x"].max() == 4300
    left = study_fig2("left")
    assert left[(left["task"] == "summarization") & (left["x"] == 20)]["value"].item() == 0.79
    # the left panel's entity-resolution 0 % point is zero-shot accuracy (Table 2: 0.68), not F1 (0.79)
    er = left[left["task"] == "entity_resolution"].set_index("x")
    assert er.loc[0, "metric"] == "accuracy" and er.loc[0, "value"] == study_reference(
        "entity_resolution", "accuracy", model="llama-2-7b-chat", scenario="0-shot"
    )
    assert set(er.loc[20:, "metric"]) == {"f1"}
    with pytest.raises(InvalidParameter, match="'middle'"):
        study_fig2("middle")


def test_fractions_are_checked_before_anything_trains(tmp_path):
    assert check_fractions([0.5, 0, 0.25, 0.5]) == [0.0, 0.25, 0.5]
    for bad in ([], [1.5], "0.5", [-0.1]):
        with pytest.raises(InvalidParameter):
            check_fractions(bad)
    config = FinetuneConfig.preset("cpu")  # batch 4: 1 % of 600 fact-checking examples is 6, 0.5 % is 3
    with pytest.raises(InvalidParameter, match=r"train_fraction=0.005 of 600: 3 training example\(s\), fewer than"):
        fraction_sweep(
            BASE,
            "fact_checking",
            [0.01, 0.005],
            config=config,
            finetune_root=tmp_path / "ft",
            output_dir=tmp_path / "runs",
        )
    assert not (tmp_path / "ft").exists()  # nothing trained, not even the feasible 1 %


@pytest.fixture(scope="module")
def tiny_tune(tmp_path_factory, embedded_model_dir):
    out = tmp_path_factory.mktemp("fc_tune")
    return out, finetune(BASE, "fact_checking", config=FinetuneConfig.preset("cpu", **TINY), output_dir=out)


@pytest.mark.slow
def test_top_layers_adapt_only_the_top_of_the_model(tiny_tune):
    _, result = tiny_tune
    lora = result.model_card["lora"]
    assert lora["layers"] == [28, 29]  # SmolLM2-135M has 30 decoder layers
    # 7 projections x 2 layers, r=4: (576+576)*4 q,o + (576+192)*4 k,v + (576+1536)*4 gate,up,down
    per_layer = 4 * ((576 + 576) * 2 + (576 + 192) * 2 + (576 + 1536) * 3)
    assert lora["trainable_parameters"] == 2 * per_layer
    summary = training_summary({"fact_checking": result})
    assert summary.loc[0, "optimizer steps"] == 4 and summary.loc[0, "examples used"] == 8
    assert summary.loc[0, "effective epochs"] == 1.0 and summary.loc[0, "tokens/s"] > 0


@pytest.mark.slow
def test_checkpoint_curve_evaluates_base_and_every_checkpoint(tiny_tune, tmp_path, cache):
    folder, result = tiny_tune
    curve = checkpoint_curve(
        folder, limit=6, output_dir=tmp_path / "curve", cache=cache, n_resamples=200, progress=False
    )
    assert list(curve.columns) == CURVE_COLUMNS
    acc = curve[curve["metric"] == "accuracy"].sort_values("samples")
    assert acc["samples"].tolist() == [0, 4, 8] and acc["point"].tolist() == ["base", "step 2", "step 4"]
    assert acc["epochs"].tolist() == [0.0, 0.5, 1.0] and acc["train_examples"].tolist() == [0, 8, 8]
    assert (acc["n"] == 6).all() and (acc["ci_low"] <= acc["value"]).all() and (acc["value"] <= acc["ci_high"]).all()
    runs = [json.loads((Path(r) / "params.json").read_text()) for r in acc["run"]]
    assert [p["scenario"] for p in runs] == ["0-shot", "fine-tuned", "fine-tuned"]
    assert runs[1]["adapter"].endswith("checkpoint-2") and runs[2]["adapter"].endswith("checkpoint-4")
    # the same items everywhere: the seed-0 sample of the fine-tune's own test data
    ids = [json.loads(line)["id"] for line in open(f"{acc['run'].iloc[0]}/predictions.jsonl")]
    assert ids == [json.loads(line)["id"] for line in open(f"{acc['run'].iloc[2]}/predictions.jsonl")]
    assert len(cache) == 3 * 6  # one generation per item and point
    # a rerun is answered from records and cache: no new generation
    again = checkpoint_curve(
        folder, limit=6, output_dir=tmp_path / "curve", cache=cache, n_resamples=200, progress=False
    )
    pd.testing.assert_frame_equal(again, curve)
    assert len(cache) == 3 * 6


@pytest.mark.slow
def test_checkpoint_curve_needs_a_finetune_folder(tmp_path):
    with pytest.raises(InvalidParameter, match="not a labscale fine-tuning folder"):
        checkpoint_curve(tmp_path, limit=4)


@pytest.mark.slow
def test_fraction_sweep_trains_one_adapter_per_fraction(tmp_path, cache, embedded_model_dir):
    config = FinetuneConfig.preset("cpu", **{**TINY, "checkpoint_every_samples": None, "train_fraction": 1.0})
    curve = fraction_sweep(
        BASE,
        "fact_checking",
        [0, 4 / 600, 8 / 600],
        config=config,
        finetune_root=tmp_path / "ft",
        output_dir=tmp_path / "runs",
        limit=4,
        cache=cache,
        n_resamples=200,
        progress=False,
    )
    acc = curve[curve["metric"] == "accuracy"].sort_values("fraction")
    assert acc["train_examples"].tolist() == [0, 4, 8] and acc["samples"].tolist() == [0, 4, 8]
    assert acc["design"].unique().tolist() == ["fractions"] and acc["point"].iloc[0] == "base"
    cards = sorted((tmp_path / "ft").glob("fraction-*/adapter/labscale_card.json"))
    assert [json.loads(c.read_text())["data"]["train_used"] for c in cards] == [4, 8]
