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
