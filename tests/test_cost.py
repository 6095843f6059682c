"""Cost accounting: the dated price table, the study's Table 3 arithmetic, token counting and our cost table."""

from __future__ import annotations

import importlib.util
import json
import math

import pandas as pd
import pytest

from labscale import cost, records
from labscale.cost import (
    adapter_training_seconds,
    beside_study_table3,
    cost_table,
    count_tokens,
    join_quality,
    load_prices,
    pareto_frontier,
    price,
    price_item,
    run_cost,
    study_cost_quality,
    study_table3,
    study_table3_check,
)
from labscale.errors import InvalidParameter
from labscale.plots import cost_quality_panels, cost_quality_plot

OPENAI = "https://api.openai.com/v1"
CPU = {"cuda": False, "cpu_count": 2, "machine": "x86_64"}


# -- prices -----------------------------------------------------------------------------------------------------
def test_every_price_has_a_date_and_a_source():
    prices = load_prices()
    assert len(prices) >= 15
    assert set(prices["kind"]) == set(cost.PRICE_KINDS)
    assert prices["date"].notna().all() and (prices["date"] >= "2022-01-01").all()
    assert prices["source"].str.strip().str.len().gt(10).all()
    assert not prices.duplicated(["kind", "item", "date"]).any()
    # the study's prices are flagged and carry its citation
    study = prices[prices["study"]]
    assert set(zip(study["kind"], study["item"], study["usd"], strict=True)) == {
        ("api_input_per_1k", "gpt-4-1106-preview", 0.010),
        ("api_input_per_1k", "gpt-3.5-turbo-1106", 0.001),
        ("api_input_per_1k", "ft:gpt-3.5-turbo", 0.003),
        ("api_training_per_1k", "ft:gpt-3.5-turbo", 0.008),
        ("gpu_hour", "gcp-t4-spot", 0.32),
    }
    assert study["source"].str.contains("Wolfe et al. 2024").all()
    # output prices published at DevDay, and the alternatives the book compares
    assert price("api_output_per_1k", "gpt-4-1106-preview") == 0.03
    assert price("api_output_per_1k", "gpt-3.5-turbo-1106") == 0.002
    assert price("api_output_per_1k", "ft:gpt-3.5-turbo") == 0.006
    devday = prices[(prices["date"] == "2023-11-06") & (prices["kind"] == "api_output_per_1k")]
    assert devday["source"].str.contains("OpenAI pricing page, Nov 2023 (DevDay)", regex=False).all()
    assert price("gpu_hour", "a40") == 0.475
    colab = prices[prices["item"] == "colab-pro-t4"].iloc[0]
    assert colab["usd"] == pytest.approx(0.196) and "ASSUMPTION" in colab["source"]


def test_price_lookup_errors_name_the_valid_choices():
    with pytest.raises(InvalidParameter, match=r"no gpu_hour price for 'h100'.*'colab-pro-t4'.*'gcp-t4-spot'"):
        price("gpu_hour", "h100")
    with pytest.raises(InvalidParameter, match=r"unknown price kind 'api_per_1k'.*'api_input_per_1k'"):
        price("api_per_1k", "gpt-4-1106-preview")
    with pytest.raises(InvalidParameter, match="on or before 2023-01-01; the earliest is dated 2023-11-06"):
        price("api_input_per_1k", "gpt-4-1106-preview", as_of="2023-01-01")
    with pytest.raises(InvalidParameter, match="as_of must be a date"):
        load_prices(as_of="last tuesday")
    with pytest.raises(InvalidParameter, match=r"no api_input_per_1k price for model 'claude-2'.*price_map"):
        price_item("claude-2", "api_input_per_1k")


def test_prices_are_dated():
    assert price("api_input_per_1k", "ft:gpt-3.5-turbo", as_of="2023-10-01") == 0.012  # launch price
    assert price("api_input_per_1k", "ft:gpt-3.5-turbo", as_of="2023-11-06") == 0.003  # DevDay
    assert price("api_input_per_1k", "ft:gpt-3.5-turbo") == 0.003
    october = load_prices(as_of="2023-10-01")
    assert "gpt-4-1106-preview" not in set(october["item"])
    assert not october.duplicated(["kind", "item"]).any()


def test_price_items_follow_the_study_or_the_listed_snapshot():
    assert price_item("gpt-3.5-turbo-0613", "api_input_per_1k") == "gpt-3.5-turbo-1106"  # what the study did
    assert price_item("gpt-3.5-turbo-0613", "api_input_per_1k", price_map="listed") == "gpt-3.5-turbo-0613"
    assert price_item("openai:gpt-4-1106-preview", "api_input_per_1k") == "gpt-4-1106-preview"
    assert price_item("ft:gpt-3.5-turbo-0613:uw-howe-lab::8acqZkEt", "api_input_per_1k") == "ft:gpt-3.5-turbo"
    assert price_item("gpt-3.5-turbo-0613", "api_training_per_1k") == "ft:gpt-3.5-turbo"


# -- the study's Table 3 ----------------------------------------------------------------------------------------
def test_study_table3_arithmetic_from_its_own_inputs():
    gpt4_zero = 260_056 / 1000 * price("api_input_per_1k", "gpt-4-1106-preview")
    assert round(gpt4_zero, 2) == 2.60
    mistral_tuned = 0.92 * price("gpu_hour", "gcp-t4-spot")
    assert round(mistral_tuned, 2) == 0.29
    training = 727_845 / 1000 * price("api_training_per_1k", "ft:gpt-3.5-turbo")
    assert round(training, 2) == 5.82
    tuned_inference = 260_056 / 1000 * price("api_input_per_1k", "ft:gpt-3.5-turbo")
    assert round(tuned_inference, 2) == 0.78
    assert round(training + tuned_inference, 2) == 6.60

    table = study_table3()
    assert len(table) == 28 and table["model"].nunique() == 5
    assert (
        table.loc[(table["model"] == "gpt-3.5-turbo") & (table["scenario"] == "fine-tuning"), "total_usd"].item()
        == 6.60
    )
    check = study_table3_check()
    assert check["difference"].abs().max() <= 0.006  # every total within a cent of its inputs
    off = check[check["recomputed_usd"].round(2) != check["total_usd"]]
    # hours are published rounded to 0.01 h: three totals differ by a cent from hours x $0.32
    assert set(zip(off["model"], off["scenario"], strict=True)) == {
        ("falcon-7b-instruct", "3-shot"),
        ("llama-2-7b-chat", "3-shot"),
        ("llama-2-7b-chat", "fine-tuned"),
    }


# -- tokens -----------------------------------------------------------------------------------------------------
def test_chat_overhead_is_counted():
    conversation = [{"role": "system", "content": "x" * 8}, {"role": "user", "content": "y" * 40}]
    n, method = count_tokens(conversation, method="chars4")
    # per message 3 + role + content; +3 to prime the reply (the study's compute_oai_tokens)
    assert n == (3 + 2 + 2) + (3 + 1 + 10) + 3
    assert "chars/4" in method and "chat overhead 3/message + 3" in method
    named = [{"role": "user", "name": "ab", "content": "y" * 40}]
    assert count_tokens(named, method="chars4")[0] == 3 + 1 + 1 + 1 + 10 + 3
    assert count_tokens([conversation, conversation], method="chars4")[0] == 2 * n
    text_n, text_method = count_tokens(["abcdefgh", "abc"], method="chars4")
    assert text_n == 3 and "overhead" not in text_method
    assert count_tokens("", method="chars4")[0] == 0
    with pytest.raises(InvalidParameter):
        count_tokens([1, 2], method="chars4")


def test_offline_fallback_reports_its_method():
    n, method = count_tokens(
        [{"role": "user", "content": "Claim: x. Evidence: y. What is the correct label?"}], "gpt-4-1106-preview"
    )
    assert n > 7
    assert method.startswith(("tiktoken cl100k_base", "chars/4 approximation"))
    if importlib.util.find_spec("tiktoken") is None:
        assert method.startswith("chars/4 approximation")
        with pytest.raises(InvalidParameter, match="tiktoken cannot load"):
            count_tokens("hello", method="tiktoken")


def test_tiktoken_counts_when_its_encoding_is_available():
    pytest.importorskip("tiktoken")
    n, method = count_tokens("hello world", "gpt-3.5-turbo-0613")
    if not method.startswith("tiktoken"):
        pytest.skip("tiktoken is installed but its cl100k_base file is not available offline")
    assert n == 2
    assert count_tokens([{"role": "user", "content": "hello world"}], "gpt-3.5-turbo-0613")[0] == 3 + 1 + 2 + 3


# -- our runs -----------------------------------------------------------------------------------------------------
def write_eval(
    root,
    name,
    *,
    model,
    model_info,
    shots=0,
    wall=0.0,
    tokens=None,
    usage=None,
    accuracy=0.5,
    task="fact_checking",
    hardware=CPU,
    example=None,
    written=None,
    adapter=None,
):
    n = len(tokens) if tokens else 3
    predictions = [
        {
            "id": str(i),
            "target": "SUPPORTS",
            "reply": "SUPPORTS",
            "parsed": "SUPPORTS",
            "invalid": False,
            "prompt_tokens": tokens[i][0] if tokens else None,
            "completion_tokens": tokens[i][1] if tokens else None,
            "cached": False,
        }
        for i in range(n)
    ]
    manifest = {
        "model": {"spec": model, **model_info},
        "items": n,
        "hardware": hardware,
        "wall_seconds": wall,
        "usage": usage
        or {
            "requests": n,
            "cache_hits": 0,
            "model_calls": n,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "generation_seconds": wall,
        },
    }
    if example is not None:
        manifest["example_messages"] = example
    params = {"model": model, "task": task, "source": "offline", "shots": shots}
    if adapter is not None:  # as labscale.runner records an adapter run: the base model's label, the adapter apart
        params.update(adapter=adapter, scenario="fine-tuned")
    run = records.write_run(
        root / name,
        params=params,
        predictions=predictions,
        metrics={"accuracy": {"value": accuracy, "ci_low": accuracy - 0.1, "ci_high": accuracy + 0.1, "n": n}},
        manifest=manifest,
    )
    if written:  # make "most recent" deterministic
        m = json.loads((run / "manifest.json").read_text())
        m["written_at"] = written
        (run / "manifest.json").write_text(json.dumps(m))
    return run


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "runs"
    gpt4 = {"backend": "openai", "model": "gpt-4-1106-preview", "revision": None, "base_url": OPENAI}
    write_eval(
        root,
        "gpt4/fc/0shot",
        model="gpt-4-turbo",
        model_info=gpt4,
        wall=1152,
        tokens=[(100, 1), (200, 1), (300, 2)],
        accuracy=0.72,
    )
    write_eval(
        root,
        "gpt35/fc/1shot",
        model="gpt-3.5-turbo",
        shots=1,
        wall=720,
        accuracy=0.52,
        model_info={"backend": "openai", "model": "gpt-3.5-turbo-0613", "base_url": OPENAI},
        usage={"requests": 3, "cache_hits": 0, "prompt_tokens": 1000, "completion_tokens": 10},
    )
    write_eval(
        root,
        "gpt35ft/fc/0shot",
        model="openai:ft:gpt-3.5-turbo-0613:lab::abc",
        wall=396,
        accuracy=0.73,
        model_info={"backend": "openai", "model": "ft:gpt-3.5-turbo-0613:lab::abc", "base_url": OPENAI},
        tokens=[(250, 2), (250, 3)],
    )
    hf = {"backend": "hf", "model": "mistralai/Mistral-7B-Instruct-v0.1", "revision": None}
    write_eval(
        root,
        "mistral/fc/0shot",
        model="mistral-7b-instruct",
        model_info=hf,
        wall=3492,
        accuracy=0.62,
        hardware={"cuda": True, "gpu": "Tesla T4"},
        tokens=[(90, 1), (95, 1), (99, 1)],
    )
    adapter = "hf:mistralai/Mistral-7B-Instruct-v0.1?adapter=adapters/fc"
    write_eval(root, "mistral-ft/fc/0shot", model=adapter, model_info=hf, wall=3312, accuracy=0.75)
    # a served-by-us OpenAI-compatible model is local compute: costed by the hour
    write_eval(
        root,
        "served/fc/0shot",
        model="openai:smollm2?base_url=http://127.0.0.1:8000/v1",
        wall=360,
        model_info={"backend": "openai", "model": "smollm2", "base_url": "http://127.0.0.1:8000/v1"},
        accuracy=0.3,
        task="entity_resolution",
    )
    ft = root / "finetune" / "ftjob-1"
    ft.mkdir(parents=True)
    (ft / "finetune.json").write_text(
        json.dumps(
            {
                "kind": "finetune",
                "backend": "openai",
                "job_id": "ftjob-1",
                "base_model": "gpt-3.5-turbo-0613",
                "fine_tuned_model": "ft:gpt-3.5-turbo-0613:lab::abc",
                "trained_tokens": 727_845,
                "wall_seconds": 5544,
                "task": "fact_checking",
                "status": "succeeded",
            }
        )
    )
    (ft.parent / "ftjob-2").mkdir()
    (ft.parent / "ftjob-2" / "finetune.json").write_text(
        json.dumps(
            {
                "kind": "finetune",
                "backend": "openai",
                "job_id": "ftjob-2",
                "base_model": "gpt-3.5-turbo-0613",
                "trained_tokens": None,
                "status": "failed",
                "task": "fact_checking",
            }
        )
    )
    # a local LoRA adapter as labscale.finetune leaves it (its card), evaluated through adapter=, and a merged copy
    card = {
        "labscale_card_version": 1,
        "created_at": "2024-03-01T00:00:00+0000",
        "task": "fact_checking",
        "base_model": {"spec": "smollm2-135m", "backend": "hf", "model": "smollm2-135m"},
        "wall_seconds": 1800.0,
        "train_tokens": 12_345,
        "hardware": CPU,
    }
    smol = root / "adapters" / "smol" / "adapter"
    smol.mkdir(parents=True)
    (smol / "labscale_card.json").write_text(json.dumps(card))
    (root / "adapters" / "merged").mkdir()
    (root / "adapters" / "merged" / "labscale_card.json").write_text(
        json.dumps({**card, "merged_from_adapter": str(smol)})
    )
    write_eval(
        root,
        "smol-ft/fc/0shot",
        model="smollm2-135m",
        adapter=str(smol),
        wall=360,
        accuracy=0.4,
        model_info={"backend": "hf", "model": "smollm2-135m"},
    )
    local = tmp_path / "adapters" / "fc"
    local.mkdir(parents=True)
    (local / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "finetune",
                "base_model": "mistral-7b-instruct",
                "model_string": adapter,
                "task": "fact_checking",
                "wall_seconds": 36_000,
                "hardware": {"cuda": True, "gpu": "Tesla T4"},
            }
        )
    )
    return root, local / "manifest.json"


def test_run_cost_of_an_api_run_and_a_local_run(runs):
    root, _ = runs
    api = run_cost(root / "gpt4" / "fc" / "0shot")
    assert (api["input_tokens"], api["output_tokens"]) == (600, 4)
    assert api["token_method"].startswith("reported usage (per prediction")
    assert api["pricing"] == "api tokens" and api["price_items"] == "gpt-4-1106-preview"
    assert api["usd"] == pytest.approx(600 / 1000 * 0.010 + 4 / 1000 * 0.030)
    assert api["hours"] == pytest.approx(0.32)
    no_output = run_cost(root / "gpt4" / "fc" / "0shot", include_output=False)
    assert no_output["usd"] == pytest.approx(0.006)

    local = run_cost(root / "mistral" / "fc" / "0shot")
    assert local["pricing"] == "gpu hours" and local["hardware"] == "Tesla T4"
    assert local["usd_per_hour"] == 0.32 and local["usd"] == pytest.approx(0.97 * 0.32)
    assert run_cost(root / "mistral" / "fc" / "0shot", gpu="a40")["usd"] == pytest.approx(0.97 * 0.475)
    with pytest.raises(InvalidParameter, match="valid items"):
        run_cost(root / "mistral" / "fc" / "0shot", gpu="h100")

    totals = run_cost(root / "gpt35" / "fc" / "1shot")  # manifest usage totals, the study's 1106 price
    assert totals["token_method"] == "reported usage (manifest totals)"
    assert totals["usd"] == pytest.approx(1000 / 1000 * 0.001 + 10 / 1000 * 0.002)
    listed = run_cost(root / "gpt35" / "fc" / "1shot", price_map="listed")
    assert listed["usd"] == pytest.approx(1000 / 1000 * 0.0015 + 10 / 1000 * 0.002)


def test_fine_tuning_manifests_are_told_apart_from_run_records(runs):
    root, local_finetune = runs
    assert records.read_manifest(local_finetune)["kind"] == records.read_manifest(local_finetune.parent)["kind"]
    assert records.find_finetune_manifests(root.parent) == [local_finetune]
    assert records.find_finetune_manifests(root) == []  # evaluation runs; API jobs and adapters have their own files
    with pytest.raises(InvalidParameter, match="not a complete run record"):
        run_cost(local_finetune.parent)


def test_run_cost_counts_tokens_when_no_usage_was_reported(tmp_path):
    example = [{"role": "user", "content": "z" * 80}]
    run = write_eval(
        tmp_path,
        "r",
        model="gpt-4-turbo",
        wall=60,
        example=example,
        model_info={"backend": "openai", "model": "gpt-4-1106-preview", "base_url": OPENAI},
    )
    row = run_cost(run, token_method="chars4")
    per_item = 3 + 1 + 20 + 3
    assert row["input_tokens"] == 3 * per_item
    assert row["output_tokens"] == 3 * 2  # "SUPPORTS" = 8 chars
    assert row["token_method"].startswith("estimated: chars/4 approximation")
    assert "first item's prompt x 3 items" in row["token_method"]
    exact = run_cost(run, conversations=[example] * 3, token_method="chars4")
    assert exact["input_tokens"] == 3 * per_item and exact["token_method"].startswith("counted: chars/4")


def test_cost_table_rebuilds_table3_from_run_records(runs):
    root, local_finetune = runs
    table = cost_table(root, finetune_records=[local_finetune])
    rows = {
        (m, t, r): row
        for m, t, r, row in zip(table["model"], table["task"], table["regime"], table.to_dict("records"), strict=True)
    }
    assert set(rows) == {
        ("gpt-4-turbo", "fact_checking", "0-shot"),
        ("gpt-3.5-turbo", "fact_checking", "1-shot"),
        ("gpt-3.5-turbo", "fact_checking", "fine-tuned"),
        ("gpt-3.5-turbo", "fact_checking", "fine-tuning"),
        ("mistral-7b-instruct", "fact_checking", "0-shot"),
        ("mistral-7b-instruct", "fact_checking", "fine-tuned"),
        ("mistral-7b-instruct", "fact_checking", "fine-tuning"),
        ("smollm2-135m", "fact_checking", "fine-tuned"),
        ("smollm2-135m", "fact_checking", "fine-tuning"),
        ("openai:smollm2?base_url=http://127.0.0.1:8000/v1", "entity_resolution", "0-shot"),
    }

    assert rows["gpt-4-turbo", "fact_checking", "0-shot"]["usd"] == pytest.approx(0.00612)
    tuned = rows["gpt-3.5-turbo", "fact_checking", "fine-tuned"]
    assert tuned["usd"] == pytest.approx(500 / 1000 * 0.003 + 5 / 1000 * 0.006)
    assert tuned["price_items"] == "ft:gpt-3.5-turbo"
    training = rows["gpt-3.5-turbo", "fact_checking", "fine-tuning"]
    assert training["training_tokens"] == 727_845 and training["usd_per_1k_training"] == 0.008
    assert training["usd"] == pytest.approx(727_845 / 1000 * 0.008 + tuned["usd"])
    assert training["hours"] == pytest.approx(5544 / 3600 + 396 / 3600)
    assert training["input_tokens"] == 500 and "one evaluation pass" in training["note"]

    assert rows["mistral-7b-instruct", "fact_checking", "0-shot"]["usd"] == pytest.approx(0.97 * 0.32)
    assert rows["mistral-7b-instruct", "fact_checking", "fine-tuned"]["usd"] == pytest.approx(0.92 * 0.32)
    local = rows["mistral-7b-instruct", "fact_checking", "fine-tuning"]
    assert local["hours"] == pytest.approx(10.92) and local["usd"] == pytest.approx(10.92 * 0.32)
    smol_tuned = rows["smollm2-135m", "fact_checking", "fine-tuned"]
    assert smol_tuned["usd"] == pytest.approx(0.1 * 0.32) and smol_tuned["hardware"] == "CPU (2 cores)"
    smol_training = rows["smollm2-135m", "fact_checking", "fine-tuning"]  # the card; the merged copy is skipped
    assert smol_training["hours"] == pytest.approx(0.6) and smol_training["usd"] == pytest.approx(0.6 * 0.32)
    assert smol_training["training_tokens"] == 12_345 and smol_training["run"].endswith("labscale_card.json")
    served = rows["openai:smollm2?base_url=http://127.0.0.1:8000/v1", "entity_resolution", "0-shot"]
    assert served["pricing"] == "gpu hours" and served["usd"] == pytest.approx(0.1 * 0.32)
    assert served["hardware"] == "CPU (2 cores)"
    assert list(table["regime"][table["model"] == "mistral-7b-instruct"]) == ["0-shot", "fine-tuning", "fine-tuned"]
    assert table.attrs["skipped_finetune_records"][0].endswith("(status failed)")

    # the study's choice: output tokens ignored
    study_like = cost_table(root, task="fact_checking", include_output=False, finetune_records=[local_finetune])
    assert set(study_like["task"]) == {"fact_checking"}
    assert study_like.loc[study_like["model"] == "gpt-4-turbo", "usd"].item() == pytest.approx(0.006)

    # without the local record the adapter run is still recognised as fine-tuned, but has no fine-tuning row
    plain = cost_table(root)
    assert ("mistral-7b-instruct", "fine-tuned") in set(zip(plain["model"], plain["regime"], strict=True))
    assert ("mistral-7b-instruct", "fine-tuning") not in set(zip(plain["model"], plain["regime"], strict=True))


def test_latest_run_wins_for_a_repeated_regime(tmp_path):
    info = {"backend": "hf", "model": "m"}
    write_eval(tmp_path, "a", model="hf:m", model_info=info, wall=3600, written="2024-01-01T00:00:00")
    write_eval(tmp_path, "b", model="hf:m", model_info=info, wall=7200, written="2024-02-01T00:00:00")
    table = cost_table(tmp_path)
    assert len(table) == 1 and table["hours"].item() == pytest.approx(2.0)
    assert "1 older run(s) ignored" in table["note"].item()
    assert cost_table(tmp_path / "empty").empty


def test_beside_study_table3_keeps_origins_apart(runs):
    root, local_finetune = runs
    both = beside_study_table3(cost_table(root, finetune_records=[local_finetune]))
    assert set(both["origin"]) == {"this book (run records)", "Wolfe et al. 2024, Table 3"}
    ours = both[both["origin"] == "this book (run records)"]
    assert len(ours) == 9  # fact-checking rows only, as the study's Table 3
    theirs = both[both["origin"] == "Wolfe et al. 2024, Table 3"]
    assert len(theirs) == 28
    assert theirs.loc[(theirs["model"] == "gpt-4-turbo") & (theirs["scenario"] == "0-shot"), "total_usd"].item() == 2.60
    assert list(both.columns) == [
        "origin",
        "model",
        "scenario",
        "input_tokens",
        "usd_per_1k",
        "runtime_hours",
        "usd_per_hour",
        "total_usd",
    ]


# -- cost versus quality ------------------------------------------------------------------------------------------
def test_pareto_mask_on_a_hand_made_frame():
    frame = pd.DataFrame(
        {"usd": [1.0, 2.0, 3.0, 4.0, 2.0, 0.5, float("nan")], "acc": [0.5, 0.7, 0.6, 0.9, 0.7, 0.4, 0.99]},
        index=list("abcdefg"),
    )
    mask = pareto_frontier(frame, "usd", "acc")
    assert mask.index.tolist() == list("abcdefg")
    assert mask.tolist() == [True, True, False, True, True, True, False]
    with pytest.raises(InvalidParameter):
        pareto_frontier(frame, "cost", "acc")


def test_cost_quality_plot_and_quality_join(runs):
    root, local_finetune = runs
    costs = cost_table(root, finetune_records=[local_finetune])
    joined = join_quality(costs, records.metrics_table(root), "accuracy")
    q = {(m, r): v for m, r, v in zip(joined["model"], joined["regime"], joined["quality"], strict=True)}
    assert q["gpt-4-turbo", "0-shot"] == 0.72
    assert q["gpt-3.5-turbo", "fine-tuning"] == q["gpt-3.5-turbo", "fine-tuned"] == 0.73
    assert q["mistral-7b-instruct", "fine-tuning"] == 0.75
    fig = cost_quality_plot(joined, ylabel="accuracy")
    ax = fig.axes[0]
    assert "Pareto frontier" in [line.get_label() for line in ax.get_lines()]
    assert len(ax.texts) == len(joined)

    study = study_cost_quality()
    assert study.loc[(study["model"] == "gpt-4-turbo") & (study["scenario"] == "0-shot"), "quality"].item() == 0.72
    front = study[pareto_frontier(study, "total_usd", "quality")]
    assert not front.empty and math.isclose(front["total_usd"].min(), study["total_usd"].min())
    fig = cost_quality_plot(study, cost_col="total_usd")
    assert len(fig.axes[0].texts) == int(pareto_frontier(study, "total_usd", "quality").sum())  # > 15: frontier
    with pytest.raises(InvalidParameter):
        cost_quality_plot(study, cost_col="total_usd", labels="some")
    fig = cost_quality_panels(joined, "accuracy", title="this book")  # the cost chapter's figure
    left, right = fig.axes[:2]
    assert left.get_title().startswith("Wolfe et al. 2024") and right.get_title() == "this book"
    assert left.get_ylabel() == right.get_ylabel() == "accuracy" and len(right.texts) == len(joined)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_study_claim_reads_the_published_table3():
    from labscale.cost import study_claim

    text = study_claim()
    # Table 3: Mistral fine-tuning 10.90 h / $3.49, tuned pass 0.92 h / $0.29; GPT-4-Turbo 260,056-550,171 tokens
    for number in ("10.90 h", "$3.49", "0.92 h", "$0.29", "260,056", "550,171", "$2.60", "$5.50"):
        assert number in text
    assert "0.28 h" not in text and "1,011,951" not in text
    with pytest.raises(InvalidParameter, match="models:"):
        study_claim("gpt-5")


# -- the companion study (L'Huillier, GPT 3.5 vs Llama 2 fine-tuning) ------------------------------------------
COMPANION_URL = "https://ragntune.com/blog/gpt3.5-vs-llama2-finetuning"


def test_companion_costs_hold_the_posts_numbers_and_our_arithmetic():
    from labscale.cost import companion_costs, training_cost

    table = companion_costs()
    assert len(table) == 4
    rows = {(t, m.split(" (")[0]): r for t, m, r in zip(table["task"], table["model"], table.itertuples(), strict=True)}
    assert set(rows) == {
        ("text_to_sql", "Code Llama 34B"),
        ("text_to_sql", "GPT-3.5"),
        ("viggo", "Code Llama 34B"),
        ("viggo", "GPT-3.5"),
    }
    # the post's table, verbatim
    assert rows["text_to_sql", "Code Llama 34B"].train_usd == 3.32 and rows["text_to_sql", "Code Llama 34B"].hours == 7
    assert rows["text_to_sql", "Code Llama 34B"].quote == "$3.32 (7 hour job)"
    assert rows["text_to_sql", "GPT-3.5"].train_usd == 11.99 and rows["text_to_sql", "GPT-3.5"].quote == "$11.99"
    assert rows["viggo", "Code Llama 34B"].train_usd == 4.27 and rows["viggo", "Code Llama 34B"].hours == 9
    assert rows["viggo", "Code Llama 34B"].quote == "$4.27 (9 hour job)"
    assert rows["viggo", "GPT-3.5"].train_usd == 26.05 and math.isnan(rows["viggo", "GPT-3.5"].hours)
    assert set(table.loc[table["task"] == "text_to_sql", "dataset"]) == {"SQL spider dataset"}
    assert set(table.loc[table["task"] == "viggo", "dataset"]) == {"Functional representation dataset"}
    assert (table["source"] == COMPANION_URL).all()
    assert set(table["gpu"]) == {"a40", ""}
    # recomputed: hours x $0.475/h, which the post truncated to the cent
    assert rows["text_to_sql", "Code Llama 34B"].recomputed_usd == pytest.approx(3.325, abs=1e-9)
    assert rows["viggo", "Code Llama 34B"].recomputed_usd == pytest.approx(4.275, abs=1e-9)
    assert training_cost(7, "a40") == pytest.approx(7 * 0.475)
    for key in (("text_to_sql", "Code Llama 34B"), ("viggo", "Code Llama 34B")):
        r = rows[key]
        assert math.floor(r.recomputed_usd * 100 + 1e-6) / 100 == r.train_usd
        assert pd.isna(r.implied_training_tokens)
    # GPT-3.5: cost / $0.008 per 1k = billed training tokens (our arithmetic)
    assert rows["text_to_sql", "GPT-3.5"].usd_per_1k_training == 0.008
    assert rows["text_to_sql", "GPT-3.5"].implied_training_tokens == 1_498_750
    assert rows["viggo", "GPT-3.5"].implied_training_tokens == 3_256_250
    assert math.isnan(rows["viggo", "GPT-3.5"].recomputed_usd)
    # GPT-3.5 / Code Llama per task: the post's "4-6x"
    ratios = table.groupby("task")["ratio"].first()
    assert round(ratios["text_to_sql"], 2) == 3.61 and round(ratios["viggo"], 2) == 6.10


def test_a40_price_cites_the_companion_post():
    prices = load_prices()
    a40 = prices[(prices["kind"] == "gpu_hour") & (prices["item"] == "a40")]
    assert len(a40) == 1
    row = a40.iloc[0]
    assert row["usd"] == 0.475 and not row["study"]
    assert str(row["date"].date()) == "2023-10-16"
    assert COMPANION_URL in row["source"] and "vast.ai" in row["source"]
    assert "$0.475 per hour" in row["source"]
    assert "translated repost" in row["note"]
    assert price("gpu_hour", "a40", as_of="2023-10-16") == 0.475
    with pytest.raises(InvalidParameter, match="earliest is dated 2023-10-16"):
        price("gpu_hour", "a40", as_of="2023-10-15")


def test_companion_claim_names_both_tasks_and_the_source():
    from labscale.cost import companion_claim

    text = companion_claim()
    assert COMPANION_URL in text and "L'Huillier" in text
    assert "SQL spider dataset" in text and "Functional representation dataset" in text
    for number in ("$3.32 (7 h)", "$4.27 (9 h)", "$11.99", "$26.05", "3.61x", "6.10x", "$0.475/h", "1.50M", "3.26M"):
        assert number in text
    assert "4-6x" in text


def test_join_quality_carries_intervals_and_the_interval_plot(runs):
    from labscale.plots import cost_quality_intervals

    root, local_finetune = runs
    joined = join_quality(cost_table(root, finetune_records=[local_finetune]), records.metrics_table(root), "accuracy")
    rows = joined.set_index(["model", "regime"])
    assert rows.loc[("gpt-4-turbo", "0-shot"), "quality_low"] == pytest.approx(0.62)
    assert rows.loc[("gpt-4-turbo", "0-shot"), "quality_high"] == pytest.approx(0.82)
    # fine-tuning rows take the tuned model's interval
    assert rows.loc[("mistral-7b-instruct", "fine-tuning"), "quality_low"] == pytest.approx(0.65)
    assert rows.loc[("gpt-3.5-turbo", "fine-tuning"), "quality_high"] == pytest.approx(0.83)
    fig = cost_quality_intervals(joined, ylabel="accuracy")
    ax = fig.axes[0]
    assert "Pareto frontier" in [line.get_label() for line in ax.get_lines()]
    assert len(ax.containers) == 1 and len(ax.texts) == len(joined)
    with pytest.raises(InvalidParameter):
        cost_quality_intervals(joined.drop(columns="quality_low"))
    import matplotlib.pyplot as plt

    plt.close("all")


def test_a_preempted_fine_tune_bills_every_attempt_and_shows_the_hours_lost(tmp_path):
    card = {
        "labscale_card_version": 1,
        "created_at": "2024-03-01T00:00:00+0000",
        "task": "fact_checking",
        "base_model": {"spec": "smollm2-135m", "backend": "hf", "model": "smollm2-135m"},
        "wall_seconds": 1800.0,  # the final attempt
        "attempts": {"count": 2, "interrupted": 1, "earlier_seconds": 720.0, "lost_seconds": 360.0, "lost_steps": 30},
        "train_tokens": 1000,
        "hardware": CPU,
    }
    adapter = tmp_path / "adapters" / "fc" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "labscale_card.json").write_text(json.dumps(card))
    row = cost_table(tmp_path, gpu="gcp-t4-spot").iloc[0]
    assert row["regime"] == "fine-tuning" and row["hours"] == pytest.approx((1800 + 720) / 3600)
    assert row["lost_hours"] == pytest.approx(0.1) and row["usd"] == pytest.approx(0.7 * 0.32)
    assert "1 interruption(s)" in row["note"] and "0.10 h of it redone" in row["note"]
    assert adapter_training_seconds(card) == (1800.0 + 720.0, 360.0)  # what transparency cards bill too
    card.pop("attempts")  # a card written before attempts were recorded: nothing lost, the final attempt billed
    (adapter / "labscale_card.json").write_text(json.dumps(card))
    row = cost_table(tmp_path, gpu="gcp-t4-spot").iloc[0]
    assert row["hours"] == pytest.approx(0.5) and row["lost_hours"] == 0 and "interruption" not in row["note"]
