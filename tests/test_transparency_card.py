"""Transparency cards (labscale.transparency_card) of a real tiny adapter, evaluated once through the runner."""

from __future__ import annotations

import json
import shutil

import pytest

from labscale import records
from labscale.backends import embedded
from labscale.data import fmti, registry
from labscale.finetune import CARD_FILE, FinetuneConfig, finetune
from labscale.report import format_ci
from labscale.runner import plan_experiment, run_experiment
from labscale.transparency_card import (
    ASSESSMENT_LABEL,
    FMTI_SELF_ASSESSMENT,
    GENERATED,
    adapter_card,
    render_card,
    self_assess,
)

BASE = "smollm2-135m"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, embedded_model_dir):
    """A tiny fact-checking adapter (offline data, top 2 layers) and one evaluation run of it (3 items)."""
    root = tmp_path_factory.mktemp("transparency")
    config = FinetuneConfig.preset(
        "cpu",
        train_fraction=0.01,
        per_device_batch_size=2,
        max_length=256,
        top_layers=2,
        epochs=1,
        r=4,
        alpha=8,
        warmup_steps=0,
    )
    result = finetune(BASE, "fact_checking", config=config, output_dir=root / "tune")
    plan = plan_experiment(
        [BASE],
        ["fact_checking"],
        [],
        adapters={"fact_checking": str(result.adapter_dir)},
        limit=3,
        source="offline",
        output_dir=root / "runs",
        max_new_tokens={"fact_checking": 4},
    )
    table = run_experiment(plan, progress=False)
    return result, root / "runs", table


def test_card_from_records(evaluated):
    result, runs, table = evaluated
    card = adapter_card(result.adapter_dir, runs)
    raw = json.loads((result.adapter_dir / CARD_FILE).read_text())

    assert card["base_model"]["model"] == embedded.UPSTREAM_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card["base_model"]["revision"] == embedded.revision()
    data = card["data"]
    assert data["source"] == "offline" and data["files"] == GENERATED and data["dataset"] is None
    assert data["train_used"] == raw["data"]["train_used"] == result.model_card["data"]["train_used"]
    assert data["train_split_size"] == raw["data"]["train_split_size"]
    assert card["lora"]["layers"] == raw["lora"]["layers"] and len(card["lora"]["layers"]) == 2
    assert card["seeds"] == {"seed": raw["config"]["seed"], "data_seed": raw["data"]["data_seed"]}
    assert card["provenance"]["request_fingerprint"] == raw["request_fingerprint"]

    compute = card["compute"]
    assert compute["hours"] == pytest.approx(raw["wall_seconds"] / 3600)
    assert compute["cost_usd"] == pytest.approx(compute["hours"] * 0.32, rel=1e-12)
    assert compute["usd_per_hour"] == 0.32 and compute["price_date"] and compute["price_source"]

    # the one evaluation run of this adapter, its accuracy exactly as metrics_table has it
    metrics = records.metrics_table(runs)
    assert len(set(metrics["run"])) == 1
    acc = metrics[metrics["metric"] == "accuracy"].iloc[0]
    got = [e for e in card["evaluation"] if e["metric"] == "accuracy"]
    assert len(got) == 1
    assert (got[0]["value"], got[0]["ci_low"], got[0]["ci_high"], got[0]["n"]) == (
        acc["value"],
        acc["ci_low"],
        acc["ci_high"],
        acc["n"],
    )
    assert set(table["run"]) == {got[0]["run"]}
    assert adapter_card(result.adapter_dir)["evaluation"] == []  # no runs root, no runs

    assessment = self_assess(card)
    body = assessment[assessment["indicator"] != "Total"]
    assert assessment.attrs["label"] == ASSESSMENT_LABEL
    assert int(assessment.iloc[-1]["satisfied"]) == body["satisfied"].sum() == assessment.attrs["total"]
    assert set(body["satisfied"]) <= {0, 1} and len(body) == len(FMTI_SELF_ASSESSMENT)
    verdict = dict(zip(body["indicator"], body["satisfied"], strict=True))
    assert verdict["Evaluation of capabilities"] == 1 and verdict["Data size"] == 1
    assert verdict["Energy usage"] == verdict["Copyrighted data"] == verdict["Mitigations for privacy"] == 0

    markdown = render_card(card, assessment)
    assert "not an FMTI score" in markdown and "Self-assessment, not an FMTI score" in markdown
    interval = format_ci(acc["value"], acc["ci_low"], acc["ci_high"])
    assert interval in markdown and "[" in interval
    assert GENERATED in markdown


def test_self_assessment_names_are_fmti_v1_upstream_or_model_indicators(shared_data):
    table = fmti.indicators().set_index("indicator")
    names = [r.indicator for r in FMTI_SELF_ASSESSMENT]
    assert len(set(names)) == len(names)
    for rule in FMTI_SELF_ASSESSMENT:
        assert rule.indicator in table.index, rule.indicator
        assert table.loc[rule.indicator, "domain"] == rule.domain in ("Upstream", "Model")
        assert table.loc[rule.indicator, "subdomain"] == rule.subdomain
        assert rule.rule.endswith(".")


def test_local_spider_card_names_registry_licence_citation_and_hashes(evaluated, tmp_path):
    result, _, _ = evaluated
    folder = tmp_path / "adapter"
    folder.mkdir()
    card = json.loads((result.adapter_dir / CARD_FILE).read_text())
    card["task"] = card["data"]["task"] = "text_to_sql"
    card["data"].update(
        source="local",
        synthetic=False,
        origin="/cache/data/spider/evaluation_examples/examples/dev.json + tables.json (Spider 1.0 dev, taoyds/spider)",
    )
    card["privacy"] = {"epsilon_target": 8, "epsilon_spent": 7.9, "delta": 1e-5, "mechanism": "DP-SGD"}
    (folder / CARD_FILE).write_text(json.dumps(card))

    got = adapter_card(folder)
    spider = registry.dataset("spider")
    expected = {
        f.name: f.sha256 for f in spider.files if f.path.endswith(("examples/dev.json", "examples/tables.json"))
    }
    assert len(expected) == 2
    assert got["data"]["dataset"] == "spider"
    assert got["data"]["licence"] == spider.licence and got["data"]["citation"] == spider.citation
    assert {f["path"]: f["sha256"] for f in got["data"]["files"]} == expected
    assert got["privacy"]["epsilon_spent"] == 7.9

    verdict = self_assess(got).set_index("indicator")["satisfied"]
    assert verdict["Data license"] == verdict["Data creators"] == verdict["Mitigations for privacy"] == 1
    assert verdict["Evaluation of capabilities"] == 0  # no runs root
    markdown = render_card(got)
    assert spider.licence in markdown and all(sha in markdown for sha in expected.values())
    shutil.rmtree(folder)
