"""LoRA adapters behind an OpenAI-compatible server: identity, cache keys and the parity gate.

The slow test serves real adapters with a real ``transformers serve`` on 127.0.0.1, not pinned to one model, so it
loads whichever folder a request names: a merged model (base + adapter A) stands for vLLM serving adapter A, and the
plain base folder stands for a vLLM that silently answers with the base model.
"""

from __future__ import annotations

import json

import pytest

from labscale.backends import Decoding, load_backend, parse_model_spec
from labscale.backends.served import (
    PARITY_PROMPTS,
    PARITY_TOLERANCE,
    check_engine,
    judge_parity,
    prefix_agreement,
)
from labscale.cache import ResponseCache
from labscale.errors import AdapterParityError, InvalidParameter
from labscale.hashing import sha256_file
from local_server import LocalServer

# -- the verdict on given replies ---------------------------------------------------------------------------------


def test_prefix_agreement_counts_the_common_words():
    assert prefix_agreement("Paris is the capital.", "Paris is the capital.") == 1.0
    assert prefix_agreement("Paris is the capital of France", "Paris is a city") == 2 / 6
    assert prefix_agreement("Yes", "No, it is not") == 0.0
    assert prefix_agreement("", "") == 1.0 and prefix_agreement("", "word") == 0.0


BASE = ["The claim is not supported.", "Two different devices.", "Paris."]
ADAPTER = ["SUPPORTS", "Yes, the same product", "Paris."]


def test_parity_passes_when_the_served_adapter_answers_as_the_local_one():
    drifted = ["SUPPORTS", "Yes, the same item", "Paris."]  # an engine that rounds one near-tie differently
    report = judge_parity(drifted, BASE, ADAPTER, BASE)
    assert report.passed and report.discriminating == 2 and report.closer_to_adapter == 2
    assert report.differs_from_served_base == 2
    assert report.mean_agreement == pytest.approx((1 + 3 / 4 + 1) / 3, abs=1e-4)


def test_parity_fails_when_the_server_answers_with_the_base_model():
    report = judge_parity(BASE, BASE, ADAPTER, BASE)
    assert not report.passed and report.closer_to_adapter == 0 and report.differs_from_served_base == 0
    assert "appears to answer with the base model" in report.reason and "--lora-modules" in report.reason


def test_parity_fails_beyond_the_tolerance_and_without_discriminating_prompts():
    other = ["SUPPORTS the claim fully", "Yes", "London."]  # another adapter: closer to A than to the base, but far
    report = judge_parity(other, BASE, ADAPTER, BASE)
    assert not report.passed and report.mean_agreement < PARITY_TOLERANCE and "below the tolerance" in report.reason
    blind = judge_parity(ADAPTER, BASE, BASE, BASE)
    assert not blind.passed and blind.discriminating == 0 and "cannot tell" in blind.reason
    with pytest.raises(InvalidParameter, match="same non-zero number"):
        judge_parity(ADAPTER, BASE[:2], ADAPTER, BASE)


# -- bad model strings fail before any request --------------------------------------------------------------------


def test_served_adapter_options_are_checked_before_any_request(tmp_path):
    url = "http://127.0.0.1:9/v1"  # nothing listens there: any request would fail
    with pytest.raises(InvalidParameter, match=r"adapter='.*missing'.*adapter_model.safetensors"):
        load_backend(f"openai:fc?base_url={url}&adapter={tmp_path / 'missing'}")
    with pytest.raises(InvalidParameter, match="describe a served adapter: add adapter=DIR"):
        load_backend(f"openai:fc?base_url={url}&served_base=base")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidParameter, match="engine must be NAME/VERSION"):
        load_backend(f"openai:fc?base_url={url}&adapter={tmp_path / 'a'}&engine=vllm")
    assert check_engine("transformers-serve/5.23.0") == ("transformers-serve", "5.23.0")
    with pytest.raises(InvalidParameter, match="valid choices"):
        parse_model_spec(f"openai:fc?base_url={url}&lora=x")
    assert parse_model_spec(f"openai:fc?base_url={url}&adapter=x").adapter == "x"


# -- a real server ------------------------------------------------------------------------------------------------


def _random_adapter(base_dir, out_dir, seed: int):
    """A real peft LoRA adapter whose B matrices are random (``init_lora_weights=False``): it changes replies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def served(embedded_model_dir, tmp_path_factory):
    from labscale.finetune import merge_adapter

    root = tmp_path_factory.mktemp("served")
    adapter_a = _random_adapter(embedded_model_dir, root / "adapter_a", seed=1)
    adapter_b = _random_adapter(embedded_model_dir, root / "adapter_b", seed=2)
    merged_a = merge_adapter(adapter_a, root / "merged_a", base_model=f"hf:{embedded_model_dir}")
    with LocalServer(None, root / "server") as server:
        yield {"server": server, "a": adapter_a, "b": adapter_b, "merged_a": merged_a, "base": embedded_model_dir}


def _spec(served, name, adapter, **extra) -> str:
    options = {"base_url": served["server"].base_url, "adapter": adapter, "served_base": served["base"]}
    options.update({"engine": "transformers-serve/test", **extra})
    return f"openai:{name}?" + "&".join(f"{k}={v}" for k, v in options.items() if v is not None)


@pytest.mark.slow
def test_served_adapter_passes_the_gate_and_is_keyed_by_engine_and_weights(served, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    backend = load_backend(_spec(served, served["merged_a"], served["a"]), cache=cache)
    ident = backend.identity()["served_adapter"]
    assert ident == {
        "engine": "transformers-serve",
        "version": "test",
        "name": str(served["merged_a"]),
        "weights_sha256": sha256_file(served["a"] / "adapter_model.safetensors"),
    }
    conversations = [[{"role": "user", "content": p}] for p in PARITY_PROMPTS[:2]]
    replies = backend.generate(conversations, Decoding(max_new_tokens=12), progress=False)
    parity = backend.runtime_info()["adapter_parity"]
    assert parity["passed"] and parity["discriminating"] >= 1 and parity["mean_agreement"] >= PARITY_TOLERANCE
    assert parity["replies"]["served_adapter"] != parity["replies"]["served_base"]
    assert len(cache) == 2 + 2 * len(PARITY_PROMPTS)  # the two items, and the local references (cached)
    assert [r.text for r in replies] == [r.text for r in backend.generate(conversations, Decoding(max_new_tokens=12))]

    # the same name and server with adapter B's weights is another identity: it never meets A's cached replies
    swapped = load_backend(_spec(served, served["merged_a"], served["b"]), cache=cache)
    assert swapped.identity()["served_adapter"]["weights_sha256"] != ident["weights_sha256"]
    assert swapped.request_document(conversations[0], Decoding(max_new_tokens=12), 0) != backend.request_document(
        conversations[0], Decoding(max_new_tokens=12), 0
    )
    # ... and the gate stops it: the server holds A's weights under that name, not B's
    with pytest.raises(AdapterParityError, match="parity gate failed"):
        swapped.generate(conversations, Decoding(max_new_tokens=12), progress=False)


@pytest.mark.slow
def test_a_server_answering_with_the_base_model_is_stopped_before_any_evaluation(served, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    backend = load_backend(_spec(served, served["base"], served["a"]), cache=cache)
    conversations = [[{"role": "user", "content": "Name three primary colours."}]]
    with pytest.raises(AdapterParityError, match="appears to answer with the base model") as failed:
        backend.generate(conversations, Decoding(max_new_tokens=12), progress=False)
    report = failed.value.report
    assert report.differs_from_served_base == 0 and report.closer_to_adapter == 0
    stored = [json.loads(row[0]) for row in cache._conn.execute("SELECT request FROM responses")]
    assert stored and all(doc["backend"] == "hf" for doc in stored)  # only the local references: no item was sent


@pytest.mark.slow
def test_a_server_without_a_version_needs_the_engine_named(served):
    backend = load_backend(_spec(served, served["merged_a"], served["a"], engine=None))
    with pytest.raises(InvalidParameter, match="does not report its version.*engine=NAME/VERSION"):
        backend.identity()
