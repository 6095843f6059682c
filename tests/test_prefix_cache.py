"""Shared-prefix reuse in the HF backend: the KV cache of the instruction and shots that every few-shot prompt
repeats is computed once and reused, and greedy replies stay those of the full prompts, token for token.

The guarantee is tested in fp32. In bf16 (the embedded model's inference default where the CPU has it) a reused
prefix rounds like any other change of kernel shape: 16 of 16 fact-checking labels stayed identical, and 5 of 16
zero-shot summaries of 64 tokens (``benchmarks/bench_speed.py`` reports the agreement)."""

from __future__ import annotations

import pytest

from labscale.backends import Decoding, load_backend, parse_model_spec
from labscale.backends.hf import PREFIX_MIN_TOKENS, common_prefix_length
from labscale.tasks import get_task

pytestmark = pytest.mark.slow


def task_prompts(name: str, shots: int, n: int, start: int = 0) -> list[list[dict]]:
    """The real prompts of ``n`` offline test items of task ``name`` with ``shots`` fixed shots."""
    task = get_task(name)
    data = task.load("offline")
    fixed = task.shots(data, shots)
    return [task.messages(example, fixed) for example in data.splits["test"][start : start + n]]


def backend(embedded_model_dir, options: str):
    b = load_backend(f"smollm2-135m?dtype=float32&{options}", cache=None)  # no response cache: the model runs
    b.load()
    return b


def assert_same_replies(reused, full) -> None:
    assert [g.text for g in reused] == [g.text for g in full]
    assert [g.completion_tokens for g in reused] == [g.completion_tokens for g in full]
    assert [g.prompt_tokens for g in reused] == [g.prompt_tokens for g in full]  # the full prompt, prefix included
    assert [g.extra["hit_stop"] for g in reused] == [g.extra["hit_stop"] for g in full]
    for a, b in zip(reused, full, strict=True):
        assert a.extra["logprob"] == pytest.approx(b.extra["logprob"], abs=1e-4)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_three_shot_replies_equal_the_full_prompts(embedded_model_dir, batch_size):
    prompts = task_prompts("fact_checking", 3, 6)
    decoding = Decoding(max_new_tokens=10)  # the task's budget
    full = backend(embedded_model_dir, f"batch_size={batch_size}&prefix_cache=off")
    reused = backend(embedded_model_dir, f"batch_size={batch_size}&prefix_cache=auto")
    expected = full.generate(prompts, decoding, progress=False)
    # two calls: the first four claims begin alike, so the second call reuses the kept prefix cut one token short
    replies = reused.generate(prompts[:4], decoding, progress=False) + reused.generate(
        prompts[4:], decoding, progress=False
    )
    assert_same_replies(replies, expected)
    stats = reused.runtime_info()["prefix_reuse"]
    assert stats["prefix_computations"] == 1 and stats["prompts_reused"] == 6
    assert stats["reused_prompt_tokens"] >= 6 * 400  # the instruction and three shots: about 436 tokens each
    assert full.runtime_info()["prefix_reuse"]["prompts_reused"] == 0


def test_replies_that_differ_by_item_stay_equal(embedded_model_dir):
    """Prompts of unequal length whose replies differ: the padding between prefix and item changes nothing."""
    shared = "You are a precise assistant. " * 12 + "Answer the question below in a few words.\n\n"
    questions = ["What is the capital of France?", "Name one primary colour.", "What is 2 + 2? Explain briefly."]
    prompts = [[{"role": "user", "content": shared + q}] for q in questions]
    decoding = Decoding(max_new_tokens=8)
    expected = backend(embedded_model_dir, "batch_size=3&prefix_cache=off").generate(prompts, decoding, progress=False)
    reused = backend(embedded_model_dir, "batch_size=3")
    assert_same_replies(reused.generate(prompts, decoding, progress=False), expected)
    assert len({g.text for g in expected}) == 3
    assert reused.runtime_info()["prefix_reuse"]["batches_reused"] == 1


def test_prefix_is_computed_once_per_task_and_shots(embedded_model_dir):
    b = backend(embedded_model_dir, "batch_size=2")
    decoding = Decoding(max_new_tokens=2)
    b.generate(task_prompts("fact_checking", 3, 4), decoding, progress=False)  # two batches
    b.generate(task_prompts("fact_checking", 3, 3, start=4), decoding, progress=False)  # a later call
    b.generate(task_prompts("fact_checking", 3, 1, start=7), decoding, progress=False)  # a single prompt
    stats = b.runtime_info()["prefix_reuse"]
    assert stats["prefix_computations"] == 1
    assert (stats["batches_reused"], stats["prompts_reused"]) == (5, 8)  # cut where their items first differ
    b.generate(task_prompts("medqa_tf", 3, 2), decoding, progress=False)  # another task: its own prefix
    assert b.runtime_info()["prefix_reuse"]["prefix_computations"] == 2
    assert len(b._prefix_kv) == 2
    b.generate(task_prompts("fact_checking", 3, 2, start=8), decoding, progress=False)
    assert b.runtime_info()["prefix_reuse"]["prefix_computations"] == 2  # both stay kept
    b.reset_stats()  # per run, like the usage counters
    assert b.runtime_info()["prefix_reuse"]["prefix_computations"] == 0 and len(b._prefix_kv) == 2


def test_prompts_without_a_long_shared_prefix_run_whole(embedded_model_dir):
    b = backend(embedded_model_dir, "batch_size=4")
    questions = ("What is the capital of France?", "Name one colour.")
    own_system = [
        [{"role": "system", "content": f"{q[:4]} helper."}, {"role": "user", "content": q}] for q in questions
    ]
    assert common_prefix_length(b._prompt_ids(own_system)) < PREFIX_MIN_TOKENS
    b.generate(own_system, Decoding(max_new_tokens=2), progress=False)
    assert b.runtime_info()["prefix_reuse"] == {
        "prefix_computations": 0,
        "batches_reused": 0,
        "prompts_reused": 0,
        "reused_prompt_tokens": 0,
    }


def test_zero_shot_prompts_reuse_their_system_message_and_instruction(embedded_model_dir):
    zero_shot = task_prompts("medqa_tf", 0, 4)
    on, off = backend(embedded_model_dir, "batch_size=2"), backend(embedded_model_dir, "batch_size=2&prefix_cache=off")
    shared = common_prefix_length(on._prompt_ids(zero_shot))
    assert shared >= PREFIX_MIN_TOKENS
    decoding = Decoding(max_new_tokens=6)
    assert_same_replies(
        on.generate(zero_shot, decoding, progress=False), off.generate(zero_shot, decoding, progress=False)
    )
    stats = on.runtime_info()["prefix_reuse"]
    assert stats == {
        "prefix_computations": 1,
        "batches_reused": 2,
        "prompts_reused": 4,
        "reused_prompt_tokens": 4 * shared,
    }


def test_the_option_changes_neither_identity_nor_cache_key(embedded_model_dir):
    on, off = load_backend("smollm2-135m?prefix_cache=auto"), load_backend("smollm2-135m?prefix_cache=off")
    assert (on.prefix_cache, off.prefix_cache) == ("auto", "off")
    assert on.identity() == off.identity() == load_backend("smollm2-135m").identity()
    messages, decoding = [{"role": "user", "content": "Hi"}], Decoding()
    assert on.request_document(messages, decoding, 0) == off.request_document(messages, decoding, 0)
    assert parse_model_spec("smollm2-135m?prefix_cache=off").label == "smollm2-135m"


def test_choosing_the_prefix():
    b = load_backend("smollm2-135m")  # not loaded: choosing works on token ids alone
    long = list(range(100))
    assert common_prefix_length([long + [1], long + [2, 3]]) == 100
    assert common_prefix_length([[1, 2], [1, 2]]) == 2 and common_prefix_length([]) == 0
    assert b._choose_prefix([long + [1], long + [2]]) == (tuple(long), 100)
    assert b._choose_prefix([long, long]) == (tuple(long[:99]), 99)  # a prompt's last token always runs
    assert b._choose_prefix([long[:10] + [1], long[:10] + [2]]) is None  # too short to pay
    assert b._choose_prefix([long + [1]]) is None  # one prompt, nothing kept: nothing shared
    b._prefix_kv[tuple(long + [7])] = None  # kept from a call whose items all began with token 7
    assert b._choose_prefix([long + [5]]) == (tuple(long + [7]), 100)  # a kept prefix serves as far as it agrees
    assert b._choose_prefix([long + [7, 1], long + [7, 2]]) == (tuple(long + [7]), 101)
    longer = long + list(range(200, 300))
    assert b._choose_prefix([longer + [1], longer + [2]]) == (tuple(longer), 200)  # much longer shared: a new one
    off = load_backend("smollm2-135m?prefix_cache=off")
    assert off._choose_prefix([long + [1], long + [2]]) is None
