"""The frozen trunk (labscale.finetune.trunk): computed once, it must reproduce the full forward pass."""

import pytest

from labscale.finetune.trunk import check_top_only, decoder_layers, pad_states, top_only, trunk_states


@pytest.fixture(scope="module")
def embedded(embedded_model_dir):
    from labscale.backends import parse_model_spec
    from labscale.backends.hf import HFBackend

    backend = HFBackend.from_spec(parse_model_spec("smollm2-135m?dtype=float32"))
    backend.load()
    yield backend
    backend.close()


def test_trunk_plus_top_layers_equal_the_full_pass_on_padded_batches(embedded):
    import torch

    model, tokenizer = embedded.model, embedded.tokenizer
    texts = ["Patient, 54, reports chest pain on exertion.", "True or false: aspirin is an anticoagulant?", "Hi"]
    rows = [tokenizer(t)["input_ids"] for t in texts]
    first = 26
    states = trunk_states(model, rows, first, batch_size=2)
    assert [tuple(s.shape) for s in states] == [(len(r), model.config.hidden_size) for r in rows]
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], attention[i, : len(r)] = torch.tensor(r), 1
    holder, name = decoder_layers(model)
    assert holder is model.model and name == "layers"
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=attention).logits
        with top_only(model, first):
            assert len(model.model.layers) == model.config.num_hidden_layers - first
            split = model(inputs_embeds=pad_states(states, width), attention_mask=attention).logits
    assert len(model.model.layers) == model.config.num_hidden_layers  # restored on exit
    for i, r in enumerate(rows):  # the real positions; padding is never scored
        assert torch.allclose(full[i, : len(r)], split[i, : len(r)], atol=1e-4)
    assert check_top_only(model, rows[0], first) < 1e-3


def test_a_model_that_transforms_inputs_embeds_is_refused():
    """GPT-2 adds its position embeddings to inputs_embeds inside the decoder, so trunk states fed back that way
    get them twice: the check must catch it (a real architecture, random weights)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=4, n_head=2)).eval()
    assert decoder_layers(model) == (model.transformer, "h")
    with pytest.raises(ValueError, match="differ from the full forward pass"):
        check_top_only(model, [1, 5, 9, 12, 3], 2)


def test_scores_through_a_shared_trunk_equal_the_full_pass(embedded):
    from labscale.finetune.trunk import SharedTrunk
    from labscale.scoring import continuation_logprobs, sequence_logprobs

    tokenizer = embedded.tokenizer
    rows = [tokenizer(t)["input_ids"] for t in ("The patient, 71, has type 2 diabetes.", "Secret code 4 1 9 0 2 7")]
    trunk = SharedTrunk(26)
    assert trunk.usable(embedded.model, rows[0])
    plain = sequence_logprobs(embedded, rows, progress=False)
    split = sequence_logprobs(embedded, rows, progress=False, trunk=trunk)
    for a, b in zip(plain, split, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4) and len(a.token_logprobs) > 5
    assert len(trunk._states) == 2  # computed once, reused below
    again = sequence_logprobs(embedded, rows, progress=False, trunk=trunk)
    assert [s.total for s in again] == [s.total for s in split]
    prompts, secrets = ["My code is"] * 2, [" 4 1 9", " 7 7 0"]
    assert [s.total for s in continuation_logprobs(embedded, prompts, secrets, progress=False, trunk=trunk)] == (
        pytest.approx([s.total for s in continuation_logprobs(embedded, prompts, secrets, progress=False)], abs=1e-3)
    )


def test_adapted_from_reads_the_adapters_lowest_layer(tmp_path):
    import json

    from labscale.finetune.trunk import adapted_from

    for layers, first in (([28, 29], 28), (None, 0), (5, 5), ([], 0)):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"layers_to_transform": layers}))
        assert adapted_from(tmp_path) == first
