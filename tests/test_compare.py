"""Paired comparisons read back from run records: rescoring reproduces the record, deltas and Holm."""

from __future__ import annotations

import random

import numpy as np
import pytest

from labscale import metrics as M
from labscale.compare import paired_comparison, rescoring, scenario_comparisons
from labscale.errors import InvalidParameter
from labscale.records import metrics_table, write_run
from labscale.tasks import INVALID, get_task


def _record(root, task_name, scenario, replies, *, n=30, seed=0):
    """A run record of ``replies`` (a function of (example, rng) -> parsed reply) on the first ``n`` offline test
    items, scored by the task itself."""
    task = get_task(task_name)
    data = task.load("offline", seed=0)
    items = data.split("test")[:n]
    rng = random.Random(seed)
    parsed = [replies(ex, rng) for ex in items]
    metrics = task.score(items, parsed, n_resamples=200)
    predictions = [
        {"id": ex.id, "target": ex.target, "reply": p, "parsed": p, "invalid": p == INVALID}
        for ex, p in zip(items, parsed, strict=True)
    ]
    params = {
        "model": "m",
        "task": task_name,
        "source": "offline",
        "shots": 0,
        "scenario": scenario,
        "data_seed": 0,
        "task_options": {},
    }
    return write_run(
        root / task_name / scenario,
        params=params,
        predictions=predictions,
        metrics=metrics,
        manifest={"data": data.provenance()},
    )


def _noisy(labels, right):
    return lambda ex, rng: ex.target if rng.random() < right else rng.choice([*labels, INVALID])


def test_accuracy_delta_equals_the_difference_of_the_recorded_values(tmp_path):
    good = _record(tmp_path, "entity_resolution", "3-shot", _noisy(["y", "n"], 0.9), seed=1)
    bad = _record(tmp_path, "entity_resolution", "0-shot", _noisy(["y", "n"], 0.3), seed=2)
    table = metrics_table(tmp_path).set_index(["scenario", "metric"])["value"]
    for metric in ("accuracy", "f1", "invalid_rate"):
        out = paired_comparison(good, bad, metric, n_resamples=500)
        assert out["value"] == pytest.approx(table[("3-shot", metric)] - table[("0-shot", metric)])
        assert out["run_value"] == pytest.approx(table[("3-shot", metric)])
        assert out["interval"] in M.INTERVAL_METHODS and 0 <= out["p_value"] <= 1
    acc = paired_comparison(good, bad, "accuracy", n_resamples=500)
    assert acc["ci_low"] > 0 and acc["p_value"] < 0.05  # 0.9 vs 0.3 right on 30 items is not chance


def test_non_decomposable_metrics_rescore_exactly(tmp_path):
    labels = ["SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO"]
    a = _record(tmp_path, "fact_checking", "fine-tuned", _noisy(labels, 0.7), seed=3)
    b = _record(tmp_path, "fact_checking", "0-shot", _noisy(labels, 0.4), seed=4)
    out = paired_comparison(a, b, "f1_weighted", n_resamples=300)
    assert out["value"] == pytest.approx(out["run_value"] - out["baseline_value"])
    tox_a = _record(tmp_path, "toxicity", "fine-tuned", _noisy(["yes", "no"], 0.8), n=60, seed=5)
    tox_b = _record(tmp_path, "toxicity", "0-shot", _noisy(["yes", "no"], 0.5), n=60, seed=6)
    worst = paired_comparison(tox_a, tox_b, "worst_group_accuracy", n_resamples=300)
    assert worst["value"] == pytest.approx(worst["run_value"] - worst["baseline_value"])


def test_qa_and_summaries_rescore_per_item(tmp_path):
    answer = _record(
        tmp_path, "qasper", "1-shot", lambda ex, rng: ex.target if rng.random() < 0.6 else "no idea", seed=7
    )
    zero = _record(tmp_path, "qasper", "0-shot", lambda ex, rng: "Unanswerable", seed=8)
    out = paired_comparison(answer, zero, "answer_f1", n_resamples=300)
    assert out["value"] == pytest.approx(out["run_value"] - out["baseline_value"]) and out["value"] > 0
    copy = _record(tmp_path, "summarization", "1-shot", lambda ex, rng: ex.target, n=12, seed=9)
    empty = _record(tmp_path, "summarization", "0-shot", lambda ex, rng: "The patient.", n=12, seed=9)
    for metric in ("rouge1", "bleu"):
        out = paired_comparison(copy, empty, metric, n_resamples=200)
        assert out["run_value"] == pytest.approx(1.0) and out["value"] > 0.5


def test_scenario_comparisons_adjust_for_multiplicity(tmp_path):
    _record(tmp_path, "entity_resolution", "0-shot", _noisy(["y", "n"], 0.5), seed=10)
    _record(tmp_path, "entity_resolution", "1-shot", _noisy(["y", "n"], 0.55), seed=11)
    _record(tmp_path, "entity_resolution", "fine-tuned", _noisy(["y", "n"], 0.95), seed=12)
    out = scenario_comparisons(metrics_table(tmp_path), n_resamples=300)
    assert set(out["condition"]) == {"1-shot", "fine-tuned"} and set(out["metric"]) == {"accuracy", "f1"}
    assert np.allclose(out["p_holm"], M.holm(out["p_value"])) and (out["p_holm"] >= out["p_value"]).all()


def test_mismatched_runs_and_metrics_are_refused(tmp_path):
    a = _record(tmp_path, "entity_resolution", "0-shot", _noisy(["y", "n"], 0.5), n=30)
    b = _record(tmp_path, "entity_resolution", "1-shot", _noisy(["y", "n"], 0.5), n=20)
    with pytest.raises(InvalidParameter, match="same items"):
        paired_comparison(a, b, "accuracy")
    with pytest.raises(InvalidParameter, match="valid choices: 'accuracy', 'f1', 'invalid_rate'"):
        rescoring("entity_resolution", "bleu")


def test_report_names_interval_methods_and_formats_comparisons(tmp_path):
    from labscale.report import comparison_table, interval_note

    _record(tmp_path, "entity_resolution", "0-shot", _noisy(["y", "n"], 0.5), seed=13)
    _record(tmp_path, "entity_resolution", "fine-tuned", _noisy(["y", "n"], 0.95), seed=14)
    table = metrics_table(tmp_path)
    note = interval_note(table)
    assert note.startswith("95 % intervals. ") and M.INTERVAL_METHODS["clopper-pearson"] in note
    assert "accuracy, invalid_rate, precision, recall" in note and "f1" in note
    comparisons = scenario_comparisons(table, n_resamples=300)
    shown = comparison_table(comparisons)
    row = shown.loc[("m", "entity_resolution", "accuracy", "fine-tuned − 0-shot")]
    acc = comparisons[comparisons["metric"] == "accuracy"].iloc[0]
    assert row["values"] == f"{acc['value']:.2f} vs {acc['baseline_value']:.2f}"
    assert row["holds (Holm p < 0.05)"] == ("yes" if acc["p_holm"] < 0.05 else "no")


def test_parser_comparison_reads_the_same_replies_with_both_rules(tmp_path):
    from labscale.report import parser_comparison

    task = get_task("entity_resolution")
    data = task.load("offline", seed=0)
    items = data.split("test")[:4]
    # "The records do not match, n": the study's rule finds the lone 'n'; the strict grammar needs the label first
    replies = ["y", "The records do not match, n", "yes or no", "n"]
    parsed = [task.parse(r) for r in replies]
    predictions = [
        {"id": ex.id, "target": t, "reply": r, "parsed": p, "invalid": p == INVALID}
        for ex, t, r, p in zip(items, ["y", "n", "y", "n"], replies, parsed, strict=True)
    ]
    write_run(
        tmp_path / "run",
        params={
            "model": "m",
            "task": "entity_resolution",
            "source": "offline",
            "shots": 0,
            "n_resamples": 200,
            "seed": 0,
        },
        predictions=predictions,
        metrics={"accuracy": {"value": 0.5}},
        manifest={},
    )
    row = parser_comparison(metrics_table(tmp_path)).loc[("m", "entity_resolution", "0-shot")]
    assert parsed == ["y", INVALID, INVALID, "n"]
    # the study's rule also reads the echo "yes or no" as its first yes/no token, 'y'
    assert row["replies read differently"] == 2
    assert row["accuracy (strict)"].startswith("0.50") and row["accuracy (study rule)"].startswith("1.00")
    assert row["invalid (strict)"].startswith("0.50") and row["invalid (study rule)"].startswith("0.00")
    assert row["accuracy difference [95% CI]"].startswith("0.50") and row["n"] == 4


def test_a_degenerate_interval_is_shown_as_no_interval_not_as_certainty():
    from labscale.report import format_ci

    assert format_ci(0.0, 0.0, 0.0) == "0.00 [–]"
    assert format_ci(0.05, 0.0, 0.168) == "0.05 [0.00, 0.17]"
    assert format_ci(0.5, None, None) == "0.50"
