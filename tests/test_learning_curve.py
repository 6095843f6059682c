"""sweep.learning_curve: the branching a chapter used to do itself (no curve, a checkpoint curve or a fraction sweep;
the metric, the study's reference and its Fig. 2 curves), with the evaluations stubbed out so nothing trains."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import pandas as pd
import pytest

import labscale.sweep as sweep
from labscale.errors import InvalidParameter
from labscale.finetune import REQUEST_FILE

matplotlib.use("Agg")


def _curve(task: str, metric: str, design: str) -> pd.DataFrame:
    rows = []
    for point, samples, fraction, value in (("base", 0, 0.0, 0.2), ("step 2", 8, 0.5, 0.5), ("step 4", 16, 1.0, 0.8)):
        for name, v in ((metric, value), ("invalid_rate", 1 - value)):
            rows.append(
                {
                    "design": design,
                    "point": point,
                    "samples": samples,
                    "train_examples": 16 if samples else 0,
                    "fraction": fraction,
                    "epochs": samples / 16,
                    "model": "smollm2-135m",
                    "task": task,
                    "metric": name,
                    "value": v,
                    "ci_low": max(v - 0.2, 0.0),
                    "ci_high": min(v + 0.2, 1.0),
                    "n": 6,
                    "run": f"runs/curve/{point}",
                }
            )
    return pd.DataFrame(rows)[sweep.CURVE_COLUMNS]


@pytest.fixture()
def calls(monkeypatch):
    """Replace both evaluations by stubs that record their arguments and return a small curve."""
    seen: dict[str, tuple] = {}

    def checkpoint_curve(finetune_dir, **kwargs):
        seen["checkpoints"] = (finetune_dir, kwargs)
        return _curve(Path(finetune_dir).name, seen.get("metric", "accuracy"), "checkpoints")

    def fraction_sweep(base_model, task, fractions, **kwargs):
        seen["fractions"] = (base_model, task, fractions, kwargs)
        return _curve(task, seen.get("metric", "accuracy"), "fractions")

    monkeypatch.setattr(sweep, "checkpoint_curve", checkpoint_curve)
    monkeypatch.setattr(sweep, "fraction_sweep", fraction_sweep)
    return seen


def _tuned(tmp_path, task="fact_checking"):
    folder = tmp_path / "adapters" / "smollm2-135m" / task
    (folder / "adapter").mkdir(parents=True)
    request = {
        "task": task,
        "base_model": {"spec": "smollm2-135m", "model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "source": "offline",
        "data_path": None,
        "data_seed": 3,
        "task_options": {"k": 1},
    }
    (folder / REQUEST_FILE).write_text(json.dumps(request))
    return {task: SimpleNamespace(adapter_dir=folder / "adapter")}


def test_no_curve_task_means_no_curve_and_an_untuned_task_is_refused(tmp_path, calls):
    assert sweep.learning_curve(_tuned(tmp_path), None) is None
    with pytest.raises(
        InvalidParameter, match=r"curve_task='summarization' is not fine-tuned.*\[None, 'fact_checking'\]"
    ):
        sweep.learning_curve(_tuned(tmp_path / "b"), "summarization")
    assert calls == {}  # nothing was evaluated


def test_default_design_is_the_checkpoint_curve_of_the_chapters_fine_tune(tmp_path, calls):
    tuned = _tuned(tmp_path)
    curve = sweep.learning_curve(tuned, "fact_checking", limit=6, seed=5, n_resamples=200, output_dir=tmp_path / "lc")
    folder, kwargs = calls["checkpoints"]
    assert folder == tuned["fact_checking"].adapter_dir.parent and "fractions" not in calls
    assert kwargs["limit"] == 6 and kwargs["seed"] == 5 and kwargs["n_resamples"] == 200
    assert kwargs["output_dir"] == tmp_path / "lc"
    assert (curve.design, curve.x, curve.task, curve.metric) == ("checkpoints", "samples", "fact_checking", "accuracy")
    # the study's three-shot GPT-4-Turbo fact-checking accuracy (Table 2), and its Fig. 2 curves beside ours
    assert curve.reference == 0.72 and curve.reference_label == "GPT-4-Turbo 3-shot, Wolfe et al. 2024 (0.72)"
    assert curve.study is not None and set(curve.study["model"]) >= {"mistral-7b-instruct", "gpt-3.5-turbo"}
    table = curve.table()
    assert table["point"].tolist() == ["base", "step 2", "step 4"] and table["accuracy"].iloc[2] == "0.80 [0.60, 1.00]"
    reached = curve.first_reaching()
    assert reached["by_estimate"] == 16 and reached["by_lower_bound"] is None and reached["reference"] == 0.72
    assert len(curve.plot().axes) >= 2  # ours and the study's panel
    assert len(curve.plot("invalid_rate").axes) == 1


def test_fractions_choose_a_fraction_sweep_on_the_fine_tunes_model_and_data(tmp_path, calls):
    tuned = _tuned(tmp_path)
    with pytest.raises(InvalidParameter, match="pass config"):
        sweep.learning_curve(tuned, "fact_checking", fractions=[0, 0.5])
    config = object()
    curve = sweep.learning_curve(tuned, "fact_checking", fractions=[0, 0.5, 1], config=config, limit=4, seed=1)
    base, task, fractions, kwargs = calls["fractions"]
    assert (base, task, fractions) == ("smollm2-135m", "fact_checking", [0, 0.5, 1]) and kwargs["config"] is config
    assert (kwargs["source"], kwargs["data_path"], kwargs["data_seed"], kwargs["task_options"]) == (
        "offline",
        None,
        3,
        {"k": 1},
    )
    assert kwargs["finetune_root"] == tmp_path / "adapters" / "smollm2-135m" / "fact_checking_fractions"
    assert (curve.design, curve.x) == ("fractions", "fraction")
    assert curve.study is None  # the study's Fig. 2 right panel is in training samples, not fractions
    assert curve.reference == 0.72 and curve.first_reaching()["by_estimate"] == 1.0


def test_the_metric_and_reference_follow_the_task(tmp_path, calls):
    calls["metric"] = "bleu"
    curve = sweep.learning_curve(_tuned(tmp_path, "summarization"), "summarization")
    assert curve.metric == "bleu" and curve.reference == 0.08 and curve.study is None  # Table 2, GPT-4-Turbo 3-shot
    calls["metric"] = "worst_group_accuracy"
    curve = sweep.learning_curve(_tuned(tmp_path / "t", "toxicity"), "toxicity")
    assert curve.metric == "worst_group_accuracy"
    assert curve.reference is None and curve.reference_label is None and curve.first_reaching() is None
    other = sweep.learning_curve(
        _tuned(tmp_path / "e", "entity_resolution"), "entity_resolution", reference_model="gpt-3.5-turbo"
    )
    assert other.reference == 0.78 and other.reference_label.startswith("GPT-3.5-Turbo 3-shot")
