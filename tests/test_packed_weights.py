"""bf16 linear layers on reordered oneDNN weights: the same bits as ``F.linear``, only inside a generate call, never
stale, gradients through ``F.linear``; and the embedded model's replies identical with ``packed_weights`` on and off."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from labscale.backends import Decoding, load_backend, parse_model_spec
from labscale.backends.packed import packable_layers, packed_linears
from labscale.errors import InvalidParameter

#: where oneDNN computes bf16 (this project's CPUs: avx512_bf16), the layers are packed; elsewhere none are
PACKS = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def small_model(dtype=torch.bfloat16):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 96, bias=False), torch.nn.GELU(), torch.nn.Linear(96, 40), torch.nn.Linear(40, 40)
    ).to(dtype)


def plain(model, x):
    hidden = F.gelu(F.linear(x, model[0].weight))
    hidden = F.linear(hidden, model[2].weight, model[2].bias)
    return F.linear(hidden, model[3].weight, model[3].bias)


def test_inside_the_block_every_bf16_linear_is_packed_and_gives_the_same_bits():
    model = small_model()
    x = torch.randn(5, 64).to(torch.bfloat16)
    with torch.inference_mode(), packed_linears(model) as count:
        assert count == (3 if PACKS else 0)
        assert all(("forward" in m.__dict__) == PACKS for m in packable_layers(model))
        for rows in (1, 5):
            assert torch.equal(model(x[:rows]), plain(model, x[:rows]))
    assert not any("forward" in m.__dict__ for m in model.modules())  # restored: nothing outside sees a change
    assert torch.equal(copy.deepcopy(model)(x), model(x))


def test_fp32_layers_are_left_alone():
    model = small_model(torch.float32)
    assert packable_layers(model) == []
    with packed_linears(model) as count:
        assert count == 0
        assert not any("forward" in m.__dict__ for m in model.modules())


def test_a_model_whose_copy_would_not_fit_in_memory_is_left_alone(monkeypatch):
    import psutil

    model = small_model()
    layer_bytes = sum(m.weight.numel() * 2 for m in packable_layers(model))  # bf16: 2 bytes a weight
    for available, expected in ((2 * layer_bytes, 3 if PACKS else 0), (2 * layer_bytes - 1, 0)):
        memory = psutil.virtual_memory()._replace(available=available)
        monkeypatch.setattr(psutil, "virtual_memory", lambda memory=memory: memory)
        with packed_linears(model) as count:
            assert count == expected


def test_a_weight_changed_between_calls_is_never_served_stale():
    model = small_model()
    x = torch.randn(3, 64).to(torch.bfloat16)
    with torch.inference_mode(), packed_linears(model):
        before = model(x)
    model[0].weight.data += 0.5  # as peft merges an adapter: in place, behind the version counter
    with torch.inference_mode(), packed_linears(model):
        after = model(x)
    assert not torch.equal(after, before)
    assert torch.equal(after, plain(model, x))


def test_gradients_inside_the_block_go_through_plain_linear():
    model = small_model()
    x = torch.randn(4, 64).to(torch.bfloat16).requires_grad_()
    expected = torch.autograd.grad(plain(model, x).float().sum(), [x, model[3].weight])
    with packed_linears(model):
        got = torch.autograd.grad(model(x).float().sum(), [x, model[3].weight])
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not PACKS, reason="oneDNN has no bf16 here: nothing is packed, so nothing is probed")
def test_one_shape_whose_bits_differ_leaves_every_layer_alone_and_the_verdict_is_kept(monkeypatch):
    """A kernel that accumulates in another order cannot be had on demand: the fault is injected in one shape."""
    from labscale.backends import packed

    real, probes = packed._packed_forward, []

    def off_by_a_bit(module, weight, x):
        probes.append((module.out_features, x.shape[0]))
        out = real(module, weight, x)
        return out + 2**-6 if module.out_features == 40 and x.shape[0] == max(packed.PROBE_ROWS) else out

    monkeypatch.setattr(packed, "_packed_forward", off_by_a_bit)
    monkeypatch.setattr(packed, "_VERDICTS", {})
    model = small_model()
    for _ in range(2):
        with torch.inference_mode(), packed_linears(model) as count:
            assert count == 0
            assert not any("forward" in m.__dict__ for m in model.modules())
    # probed once in the process: every row count for the shapes up to the first that differs, then kept
    assert probes == [(96, rows) for rows in packed.PROBE_ROWS] + [(40, rows) for rows in packed.PROBE_ROWS]
    threads = torch.get_num_threads()
    assert packed._VERDICTS == {(96, 64, False, threads): True, (40, 96, True, threads): False}


def test_packed_weights_is_a_client_option_validated_before_loading():
    with pytest.raises(InvalidParameter, match="'auto', 'off'"):
        parse_model_spec("smollm2-135m?packed_weights=yes")
    # outside the label and the cache key: the replies are the same bits either way
    assert parse_model_spec("smollm2-135m?packed_weights=off").label == parse_model_spec("smollm2-135m").label


def test_the_embedded_models_replies_are_identical_with_and_without(embedded_model_dir):
    prompts = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "user", "content": "Summarize: the patient reports a mild headache for two days, no fever."}],
        [{"role": "user", "content": "List three vegetables."}],
    ]
    decoding = Decoding(max_new_tokens=16)
    replies, layers = {}, {}
    for setting in ("auto", "off"):
        backend = load_backend(f"smollm2-135m?dtype=bfloat16&packed_weights={setting}")  # no cache: both generate
        replies[setting] = [(g.text, g.extra["logprob"]) for g in backend.generate(prompts, decoding, progress=False)]
        layers[setting] = backend.runtime_info()["packed_layers"]
        assert not any("forward" in m.__dict__ for m in backend.model.modules())
        backend.close()
    assert replies["auto"] == replies["off"]  # texts and summed log-probabilities, bit for bit
    assert layers == {"auto": 211 if PACKS else 0, "off": 0}  # 30 layers x 7 projections + the output head
