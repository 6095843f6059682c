"""The engine benchmark's summary table (``benchmarks/bench_speed.py``): medians over repeated rounds, the prefix-reuse
ratio in tokens per second, and the agreement of replies with and without reuse."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_speed  # noqa: E402


def row(engine: str, seconds: float, tokens: int, repeat: int, **extra) -> dict:
    return {
        "workload": "summarization 0-shot",
        "precision": "bf16",
        "engine": engine,
        "batch_size": 8,
        "prompts": 16,
        "repeat": repeat,
        "seconds": seconds,
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        **extra,
    }


def test_each_engine_is_summarised_by_its_median_round():
    rows = [
        row("labscale", 9.3, 850, 0),
        row("labscale", 8.25, 850, 1),
        row("labscale", 9.15, 850, 2),
        row("lm-eval", 10.2, 849, 0),
        row("lm-eval", 10.73, 849, 1),
        row("lm-eval", 10.05, 849, 2),
    ]
    cell = bench_speed.median_rows(rows)
    assert cell["labscale"]["seconds"] == 9.15 and cell["labscale"]["tokens_per_s"] == 92.9
    assert cell["lm-eval"]["seconds"] == 10.2 and cell["lm-eval"]["tokens_per_s"] == 83.2
    assert cell["labscale"]["repeats"] == 3


def test_the_table_gives_time_ratios_for_the_same_job_and_a_rate_ratio_for_prefix_reuse():
    rows = [
        row("labscale", 8.0, 800, 0),
        row("labscale-reuse", 8.0, 900, 0, same_replies_as_without_reuse="5/16"),
        row("transformers", 10.0, 800, 0),
        row("lm-eval", 12.0, 800, 0),
    ]
    table = bench_speed.ratio_table(rows).splitlines()
    assert len(table) == 3  # header, rule, one row
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    # tokens/s of the four engines, then labscale / lm-eval and / transformers in wall time for the same job, then
    # the reuse run's rate against lm-eval's (it generated other tokens: 112.5 / 66.7) and its agreement
    assert cells == [
        "summarization 0-shot",
        "bf16",
        "8",
        "100.0",
        "112.5",
        "80.0",
        "66.7",
        "1.50x",
        "1.25x",
        "1.69x",
        "5/16",
    ]


@pytest.mark.parametrize("prefix_rows", [True, False])
def test_few_shot_rows_report_the_speed_up_and_agreement(prefix_rows):
    rows = [row("lm-eval", 9.0, 64, 0) | {"workload": "fact-checking 3-shot"}]
    if prefix_rows:
        rows += [
            row("labscale", 8.2, 64, 0) | {"workload": "fact-checking 3-shot", "prefix": "off"},
            row("labscale", 2.4, 64, 0)
            | {"workload": "fact-checking 3-shot", "prefix": "auto", "same_replies_as_without_reuse": "16/16"},
        ]
    table = bench_speed.ratio_table(rows)
    if prefix_rows:
        assert "| fact-checking 3-shot | bf16 | 8 | 8.2 | 2.4 | 3.42x | 9.0 | 16/16 |" in table
    else:
        assert "prefix off s" not in table
