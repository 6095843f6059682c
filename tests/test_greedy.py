"""Greedy decoding that drops finished replies: the same tokens and log-probabilities as greedy ``generate`` (fp32, to
the last bits of a sum), on a tiny random Llama whose replies stop at different steps, and on the embedded model's
real one-shot summaries."""

from __future__ import annotations

import pytest
import torch

from labscale.backends.greedy import generate_decode, greedy_decode
from labscale.backends.kv_cache import appending_cache


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, pad_token_id=0
    )
    return LlamaForCausalLM(config).eval()


def assert_same(model, ids, mask, stops, pad, budget):
    """``greedy_decode`` against ``generate`` on the same inputs; returns the replies' stop steps."""
    expected, expected_logprobs = generate_decode(
        model, ids, mask, appending_cache(model.config), max_new_tokens=budget, stop_ids=stops, pad_id=pad
    )
    tokens, logprobs = greedy_decode(
        model,
        ids,
        mask,
        appending_cache(model.config),
        max_new_tokens=budget,
        stop_ids=stops,
        pad_id=pad,
    )
    assert torch.equal(tokens, expected)
    stopped = [next((t + 1 for t, x in enumerate(row) if x in stops), len(row)) for row in tokens.tolist()]
    for row, length in enumerate(stopped):  # after a stop, generate scores padding: not part of the reply
        # fewer rows, other matrix shapes: fp32 sums may round a last bit apart
        torch.testing.assert_close(logprobs[row, :length], expected_logprobs[row, :length], rtol=0, atol=1e-5)
    return stopped


def test_tokens_and_logprobs_equal_generate_while_rows_leave_the_batch():
    model = tiny_llama()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 48, (6, 9), generator=generator)
    mask = torch.ones_like(ids)
    for row, pads in enumerate([0, 3, 1, 5, 0, 2]):  # left padding, as the backend lays prompts out
        ids[row, :pads], mask[row, :pads] = 0, 0
    stops = [5, 11, 17, 23, 29, 31, 37, 41]
    stopped = assert_same(model, ids, mask, stops, 0, 12)
    assert len(set(stopped)) >= 3 and min(stopped) < 12  # rows really left the batch at different steps


def test_a_batch_where_every_reply_stops_at_once_ends_there():
    model = tiny_llama()
    ids = torch.randint(1, 48, (3, 5), generator=torch.Generator().manual_seed(2))
    stops = list(range(48))  # every token stops: one step
    tokens, logprobs = greedy_decode(
        model,
        ids,
        torch.ones_like(ids),
        appending_cache(model.config),
        max_new_tokens=8,
        stop_ids=stops,
        pad_id=0,
    )
    assert tokens.shape == logprobs.shape == (3, 1)
    assert (logprobs < 0).all()


@pytest.mark.slow
def test_embedded_one_shot_summaries_equal_generate(embedded_model_dir):
    from labscale.backends import Decoding, load_backend
    from labscale.tasks import get_task

    backend = load_backend("smollm2-135m?dtype=float32&prefix_cache=off", cache=None)
    backend.load()
    task = get_task("summarization")
    data = task.load("offline")
    prompts = [task.messages(example, task.shots(data, 1)) for example in data.splits["test"][:4]]
    encoded, _ = backend._batch_inputs(backend._prompt_ids(prompts))
    stops = backend.stop_token_ids()
    stopped = assert_same(
        backend.model,
        encoded["input_ids"],
        encoded["attention_mask"],
        stops,
        backend.tokenizer.pad_token_id,
        48,
    )
    assert len(set(stopped)) == 4  # four replies, four lengths
    replies = backend.generate(prompts, Decoding(max_new_tokens=48), progress=False)
    assert [g.completion_tokens for g in replies] == stopped
