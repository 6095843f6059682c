"""The structured-tasks chapter's analyses on real run records of the embedded model (Spider and ViGGO release
files): evaluator agreement, SQL error kinds, side-by-side replies, cost beside quality, fine-tuning configs and the
offline GPT-3.5 fine-tuning estimate."""

from __future__ import annotations

import math

import pytest

from labscale import plots, structured
from labscale.cache import ResponseCache
from labscale.core import INVALID
from labscale.errors import InvalidParameter
from labscale.records import read_run
from labscale.runner import plan_experiment, run_experiment
from labscale.sql_eval import ERROR_TYPES, error_types, execution_match
from labscale.tasks.text_to_sql import TextToSQL


@pytest.fixture(scope="module")
def plan(embedded_model_dir, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    plan = plan_experiment(
        ["smollm2-135m"],
        ["text_to_sql", "viggo"],
        [0],
        limit=4,
        source="local",
        max_new_tokens={"text_to_sql": 32, "viggo": 32},
        n_resamples=200,
        output_dir=root / "runs",
        cache=ResponseCache(root / "responses.sqlite"),
        name="structured",
    )
    run_experiment(plan, progress=False)
    return plan


def _sql_record(plan):
    (run,) = [p for p in plan.output_dir.rglob("manifest.json") if "text_to_sql" in str(p)]
    return read_run(run.parent)


def test_kappa_of_two_binary_judgements():
    # 2x2 counts (both, first only, second only, neither): observed 0.8, chance 0.5
    assert structured._kappa(40, 10, 10, 40) == pytest.approx(0.6)
    assert math.isnan(structured._kappa(0, 0, 0, 20))  # one evaluator constant: undefined


def test_sql_agreement_counts_the_records_items(plan):
    table = structured.sql_agreement(plan.output_dir)
    record = _sql_record(plan)
    exact = [s["exact"] for s in record["predictions"]["scores"]]
    execution = [s["execution"] for s in record["predictions"]["scores"]]
    row = table.iloc[0]
    assert len(table) == 1 and row["items"] == 4
    assert row["both right"] == sum(e and x for e, x in zip(exact, execution, strict=True))
    assert row["both wrong"] == sum(not e and not x for e, x in zip(exact, execution, strict=True))
    assert row["both right"] + row["exact only"] + row["execution only"] + row["both wrong"] == 4
    agree = sum(e == x for e, x in zip(exact, execution, strict=True)) / 4
    assert row["agreement"] == pytest.approx(agree)
    assert row["agreement_low"] <= agree <= row["agreement_high"]


def test_sql_errors_classify_every_wrong_reply(plan):
    errors = structured.sql_errors(plan)
    record = _sql_record(plan)
    items = {ex.id: ex for ex in plan.task_plan("text_to_sql").items}
    parsed = list(record["predictions"]["parsed"])
    row = errors.iloc[0]
    assert row["invalid"] == parsed.count(INVALID)
    assert row["wrong"] == 4 - sum(s["execution"] for s in record["predictions"]["scores"])
    # each valid reply without an execution match, classified by what differs from the gold query
    expected = dict.fromkeys(ERROR_TYPES, 0)
    for item_id, p in zip(record["predictions"]["id"], parsed, strict=True):
        gold = items[item_id]
        if p != INVALID and not execution_match(p, gold.target, TextToSQL.suite(gold)):
            for kind in error_types(p, gold.target):
                expected[kind] += 1
    assert {k: row[k] for k in ERROR_TYPES} == expected


def test_side_by_side_and_prompt_preview(plan):
    table = structured.examples_side_by_side(plan, "viggo", n=2)
    items = {ex.id: ex for ex in plan.task_plan("viggo").items}
    assert len(table) == 2 and list(table.columns) == ["input", "gold", "smollm2-135m 0-shot"]
    for item_id, row in table.iterrows():
        assert row["gold"] == items[item_id].target and row["input"] == items[item_id].fields["sentence"]
    preview = structured.prompt_preview(plan, "text_to_sql", shots=1)
    assert preview.startswith("[user]\nYou are a powerful text-to-SQL model.") and preview.count("[user]") == 2
    assert structured.prompt_preview(plan, "viggo_nlg") == ""
    with pytest.raises(InvalidParameter, match="viggo_nlg"):
        plan.task_plan("viggo_nlg")


def test_cost_quality_has_one_metric_per_task_and_a_panel_each(plan):
    quality = structured.cost_quality(plan.output_dir, gpu="a40")
    assert set(quality["task"]) == {"text_to_sql", "viggo"}
    assert dict(zip(quality["task"], quality["metric"], strict=True)) == {
        "text_to_sql": "execution_accuracy",
        "viggo": "exact_match",
    }
    # hours x the A40's $0.475
    assert (quality["usd"] - quality["hours"] * 0.475).abs().max() < 1e-9
    assert (quality["quality_low"] <= quality["quality"]).all() and (
        quality["quality"] <= quality["quality_high"]
    ).all()
    fig = plots.cost_quality_by_task(quality)
    assert [ax.get_title() for ax in fig.axes] == ["text to sql", "viggo"]
    with pytest.raises(InvalidParameter, match="no structured-task run records"):
        structured.cost_quality(plan.output_dir.parent / "nothing-here")


def test_finetune_configs_use_about_the_same_number_of_examples(plan):
    configs = structured.finetune_configs(plan, ["text_to_sql", "viggo"], "cpu", examples=96, top_layers=4)
    sizes = {tp.task.name: len(tp.data.splits["train"]) for tp in plan.tasks}
    assert sizes == {"text_to_sql": 563, "viggo": 5103}
    for task, config in configs.items():
        assert config.train_fraction == pytest.approx(96 / sizes[task]) and config.top_layers == 4
    with pytest.raises(InvalidParameter, match="viggo_nlg"):
        structured.finetune_configs(plan, ["viggo_nlg"])


def test_api_finetune_estimate_is_tokens_times_epochs_times_price(plan):
    data = plan.task_plan("viggo").data
    estimate = structured.api_finetune_estimate("viggo", data, epochs=3)
    assert estimate["examples"] == 5103
    assert estimate["billed tokens"] == 3 * estimate["tokens per epoch"]
    assert estimate["estimated usd"] == pytest.approx(estimate["billed tokens"] / 1000 * 0.008)
    with pytest.raises(InvalidParameter, match="epochs"):
        structured.api_finetune_estimate("viggo", data, epochs=0)
