"""Reduced precision on the embedded SmolLM2: bf16 weights, int8 dynamic quantization, and their identities."""

from __future__ import annotations

import pytest

from labscale.backends import Decoding, load_backend, parse_model_spec
from labscale.backends.hf import HFBackend
from labscale.backends.precision import agreement, cpu_supports_bf16
from labscale.cache import ResponseCache
from labscale.errors import InvalidParameter

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PROBE = [
    FRANCE,
    [{"role": "user", "content": "Is ice cold? Answer yes or no."}],
    [{"role": "user", "content": "Name one primary colour."}],
]


# -- options: validated before anything loads ------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("smollm2-135m?quantize=int4", "'int8-dynamic'"),
        ("smollm2-135m?dtype=bf16", "'auto-bf16'"),
    ],
)
def test_invalid_values_fail_at_parsing_naming_valid_ones(text, named):
    with pytest.raises(InvalidParameter, match=named):
        parse_model_spec(text)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"quantize": "int4"}, "'int8-dynamic'"), ({"dtype": "bf16"}, "'auto-bf16'")],
)
def test_invalid_values_fail_in_the_constructor_naming_valid_ones(kwargs, named):
    with pytest.raises(InvalidParameter, match=named):
        HFBackend("some/model", **kwargs)


@pytest.fixture()
def no_loading(monkeypatch):
    """Fail the test if any weights load."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("load_in_4bit=true", "load_in_4bit"),
        ("device=cuda", "CPU only"),
        ("dtype=bfloat16", "dtype=bfloat16"),
        ("dtype=auto-bf16", "dtype=auto-bf16"),
        ("adapter=runs/adapters/fc", "adapter"),
    ],
)
def test_int8_refuses_combinations_before_loading(no_loading, options, named):
    with pytest.raises(InvalidParameter, match=named) as info:
        load_backend(f"smollm2-135m?quantize=int8-dynamic&{options}")
    assert "'int8-dynamic'" in str(info.value) or "device=cpu" in str(info.value)


def test_int8_with_load_in_8bit_is_refused_before_loading(no_loading):
    with pytest.raises(InvalidParameter, match="load_in_8bit"):
        HFBackend("some/model", quantize="int8-dynamic", load_in_8bit=True)


def test_cpu_bf16_detection_reads_cpu_flags(tmp_path):
    with_bf16 = tmp_path / "a"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    amx = tmp_path / "b"
    amx.write_text("flags\t\t: fpu avx512f amx_bf16\n")
    without = tmp_path / "c"
    without.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_supports_bf16(with_bf16) and cpu_supports_bf16(amx)
    assert not cpu_supports_bf16(without) and not cpu_supports_bf16(tmp_path / "missing")


# -- identities: caches never mix precisions ---------------------------------------------------------------
def test_identities_differ_by_precision_and_default_to_native_bf16(embedded_model_dir, no_loading):
    fp32 = load_backend("smollm2-135m?dtype=float32").identity()
    assert load_backend("smollm2-135m", scoring=True).identity() == fp32  # log-probabilities are read in fp32
    bf16 = load_backend("smollm2-135m?dtype=bfloat16").identity()
    int8 = load_backend("smollm2-135m?quantize=int8-dynamic").identity()
    assert (fp32["dtype"], bf16["dtype"], int8["dtype"]) == ("float32", "bfloat16", "float32")
    assert "quantize" not in fp32 and int8["quantize"] == "int8-dynamic"
    assert len({repr(sorted(i.items())) for i in (fp32, bf16, int8)}) == 3
    auto = load_backend("smollm2-135m?dtype=auto-bf16").identity()
    assert auto == (bf16 if cpu_supports_bf16() else fp32)  # the resolved dtype, never "auto-bf16"
    assert load_backend("smollm2-135m").identity() == auto  # the embedded model's inference default
    assert load_backend("smollm2-135m?quantize=int8-dynamic").identity() == int8  # quantize keeps its fp32 weights


# -- generation ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("options", ["dtype=bfloat16", "quantize=int8-dynamic"])
def test_reduced_precision_generates_and_records_itself(embedded_model_dir, tmp_path, options):
    backend = load_backend(f"smollm2-135m?{options}", cache=ResponseCache(tmp_path / "r.sqlite"))
    out = backend.generate([FRANCE], Decoding(max_new_tokens=12), progress=False)[0]
    assert out.text and out.completion_tokens >= 1 and not out.cached
    info = backend.runtime_info()
    if "bfloat16" in options:
        assert (info["dtype"], info["torch_dtype"], info["quantize"]) == ("bfloat16", "bfloat16", "none")
        assert next(backend.model.parameters()).dtype.__repr__() == "torch.bfloat16"
    else:
        import torch

        assert (info["torch_dtype"], info["quantize"]) == ("float32", "int8-dynamic")
        assert isinstance(backend.model.lm_head, torch.ao.nn.quantized.dynamic.Linear)
    assert info["cpu_bf16"] == cpu_supports_bf16()


@pytest.mark.slow
def test_agreement_of_a_backend_with_itself_and_with_int8(embedded_model_dir, tmp_path):
    fp32 = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "a.sqlite"))
    int8 = load_backend("smollm2-135m?quantize=int8-dynamic", cache=ResponseCache(tmp_path / "c.sqlite"))
    decoding = Decoding(max_new_tokens=6)
    same = agreement(fp32, fp32, PROBE, decoding, parse=str.lower)  # the second pass reads the cache
    assert (same["n"], same["identical"], same["token_agreement"], same["same_label"]) == (3, 1.0, 1.0, 1.0)
    other = agreement(fp32, int8, PROBE, decoding, parse=str.lower)
    assert 0.0 <= other["token_agreement"] <= 1.0 and 0.0 <= other["prefix_agreement"] <= 1.0
    assert len(other["replies"]) == 3
