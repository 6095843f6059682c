"""The in-place KV cache (labscale.backends.kv_cache): the same keys and values as transformers' DynamicLayer."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from labscale.backends.kv_cache import MIN_ROOM, AppendingLayer, appending


def _steps(seed: int, lengths, batch: int = 2):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, n, 8, generator=generator), torch.randn(batch, 3, n, 8, generator=generator))
        for n in lengths
    ]


def test_appending_in_place_returns_what_concatenation_returns():
    plain, inplace = DynamicLayer(), AppendingLayer()
    pointers = set()
    for keys, values in _steps(0, [40, 1, 1, 1, 5, 1]):
        k1, v1 = plain.update(keys, values)
        k2, v2 = inplace.update(keys, values)
        assert torch.equal(k1, k2) and torch.equal(v1, v2) and inplace.get_seq_length() == plain.get_seq_length()
        pointers.add(k2.data_ptr())
    assert len(pointers) == 1  # one buffer: the prompt's 40 positions plus room for the 9 appended
    assert inplace._buffer[0].shape[-2] == 40 + MIN_ROOM


def test_a_full_buffer_grows_and_keeps_its_contents():
    layer = AppendingLayer()
    steps = _steps(1, [MIN_ROOM, *[1] * (MIN_ROOM + 3)], batch=1)
    for keys, values in steps:
        out_keys, _ = layer.update(keys, values)
    assert out_keys.shape[-2] == 2 * MIN_ROOM + 3 and layer._buffer[0].shape[-2] > 2 * MIN_ROOM + 3
    assert torch.equal(out_keys, torch.cat([k for k, _ in steps], dim=-2))


def test_crop_then_append_overwrites_and_batch_changes_start_a_new_buffer():
    plain, inplace = DynamicCache(), appending(DynamicCache())
    for keys, values in _steps(2, [30, 1, 1]):
        plain.update(keys, values, 0)
        inplace.update(keys, values, 0)
    assert type(inplace.layers[0]) is AppendingLayer
    buffer = inplace.layers[0]._buffer[0].data_ptr()
    for cache in (plain, inplace):
        cache.crop(-2)  # a shared prefix cut back, as the backend does for a shorter common prefix
    ((keys, values),) = _steps(3, [1])
    k1, _ = plain.update(keys, values, 0)
    k2, _ = inplace.update(keys, values, 0)
    assert k1.shape == (2, 3, 31, 8) and torch.equal(k1, k2) and k2.data_ptr() == buffer  # written over the cut
    for cache in (plain, inplace):
        cache.batch_repeat_interleave(3)  # one copy per prompt of the batch
    ((keys, values),) = _steps(4, [1], batch=6)
    k1, _ = plain.update(keys, values, 0)
    k2, _ = inplace.update(keys, values, 0)
    assert k1.shape == (6, 3, 32, 8) and torch.equal(k1, k2) and k2.data_ptr() != buffer


def test_chosen_logprobs_are_the_normalised_scores_of_the_chosen_tokens():
    """Each step's scores normalised at the chosen token, closer to a float64 reference than log_softmax over the
    stacked steps (what ``compute_transition_scores`` does), and -inf where a processor masked the token out."""
    from labscale.backends.hf import chosen_logprobs

    generator = torch.Generator().manual_seed(0)
    scores = tuple(torch.randn(3, 49152, generator=generator) * 8 for _ in range(5))
    tokens = torch.randint(0, 49152, (3, 5), generator=generator)
    reference = torch.stack(
        [s.double().log_softmax(-1).gather(1, tokens[:, t : t + 1]).squeeze(1) for t, s in enumerate(scores)], 1
    )
    got = chosen_logprobs(scores, tokens)
    assert got.shape == (3, 5) and got.dtype == torch.float32
    assert torch.allclose(got.double(), reference, atol=1e-5, rtol=0)
    masked = tuple(s.clone() for s in scores)
    masked[2][1, tokens[1, 2]] = float("-inf")  # e.g. top-p filtered it
    assert chosen_logprobs(masked, tokens)[1, 2] == float("-inf")
