"""The frozen trunk (labscale.finetune.trunk): computed once, it must reproduce the full forward pass."""

import pytest

from labscale.finetune.trunk import (
    check_top_only,
    decoder_layers,
    pad_states,
    right_padded,
    top_only,
    trunk_states,
)


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
    ids, attention = right_padded(rows)
    width = ids.shape[1]
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


# -- the trunk under a trl SFTTrainer (labscale.finetune.trunk.trainer_on_trunk) ----------------------------------


def _tiny_llama(**config):
    """A real Llama architecture with random weights, small enough to build in milliseconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    options = dict(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2)
    return LlamaForCausalLM(LlamaConfig(**{**options, **config})).eval()


def _right_padding_collator(examples):
    ids, mask = right_padded([e["input_ids"] for e in examples])
    return {"input_ids": ids, "attention_mask": mask}


def test_rows_are_right_padded_with_their_mask():
    ids, mask = right_padded([[5, 6, 7], [8]], pad_id=2)
    assert ids.tolist() == [[5, 6, 7], [8, 2, 2]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert [t.tolist() for t in right_padded([[4]])] == [[[4]], [[1]]]


def test_top_layers_keep_their_names_so_a_checkpoint_saved_meanwhile_is_the_whole_models():
    model = _tiny_llama()
    layers = list(model.model.layers)
    names = set(model.state_dict())
    with top_only(model, 2):
        kept = model.model.layers
        assert len(kept) == 2 and kept[0] is layers[2] and kept[-1] is layers[3] and list(kept[1:]) == [layers[3]]
        inside = set(model.state_dict())
        assert inside == {n for n in names if not n.startswith(("model.layers.0.", "model.layers.1."))}
        assert any(n.startswith("model.layers.3.") for n in inside)
    assert list(model.model.layers) == layers and set(model.state_dict()) == names


def test_the_collator_adds_each_rows_state_padded_like_its_tokens():
    import torch

    from labscale.finetune.trunk import TrunkCollator

    rows = [[5, 6, 7], [8, 9]]
    states = {tuple(r): torch.full((len(r), 3), float(len(r))) for r in rows}
    batch = TrunkCollator(_right_padding_collator, states)([{"input_ids": r} for r in rows])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]  # kept: the Trainer counts tokens from them
    assert batch["inputs_embeds"].shape == (2, 3, 3)
    assert batch["inputs_embeds"][0].eq(3.0).all() and batch["inputs_embeds"][1, :2].eq(2.0).all()
    assert batch["inputs_embeds"][1, 2].eq(0.0).all()

    def left_padding(examples):
        batch = _right_padding_collator(examples)
        return {k: v.flip(1) for k, v in batch.items()}

    with pytest.raises(RuntimeError, match="does not right-pad"):
        TrunkCollator(left_padding, states)([{"input_ids": r} for r in rows])


def test_dropout_below_the_adapted_layers_rules_the_trunk_out():
    import torch

    from labscale.finetune.trunk import trunk_dropout

    assert trunk_dropout(_tiny_llama(), 2) == []
    assert trunk_dropout(_tiny_llama(attention_dropout=0.1), 2) == ["config.attention_dropout"]
    model = _tiny_llama()
    model.model.layers[0].mlp.add_module("drop", torch.nn.Dropout(0.1))  # in the trunk
    model.model.layers[3].mlp.add_module("lora_drop", torch.nn.Dropout(0.05))  # in an adapted layer: allowed
    assert trunk_dropout(model, 2) == ["model.layers.0.mlp.drop"]


def test_a_trainer_runs_its_steps_from_the_trunk_states_and_gets_everything_back():
    from types import SimpleNamespace

    import torch

    from labscale.finetune.trunk import TrunkCollator, trainer_on_trunk

    model = _tiny_llama()
    rows = [[3, 4, 5, 6, 7], [9, 10, 11], [12, 13, 14, 15]]
    trainer = SimpleNamespace(model=model, train_dataset={"input_ids": rows}, data_collator=_right_padding_collator)
    batch = _right_padding_collator([{"input_ids": r} for r in rows])
    with torch.no_grad():
        full = model(**batch).logits
    with trainer_on_trunk(trainer, 2) as first_layer:
        assert first_layer == 2 and isinstance(trainer.data_collator, TrunkCollator)
        assert len(model.model.layers) == 2
        split_batch = trainer.data_collator([{"input_ids": r} for r in rows])
        with torch.no_grad():  # input_ids and inputs_embeds together: the decoder takes the states
            split = model(**split_batch).logits
    assert trainer.data_collator is _right_padding_collator and len(model.model.layers) == 4
    for i, r in enumerate(rows):
        assert torch.allclose(full[i, : len(r)], split[i, : len(r)], atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):  # the pre-hook is gone with the block
        model(**split_batch)

    dropped = SimpleNamespace(model=_tiny_llama(attention_dropout=0.1), train_dataset={"input_ids": rows},
                              data_collator=_right_padding_collator)  # fmt: skip
    with trainer_on_trunk(dropped, 2) as first_layer:
        assert first_layer is None and dropped.data_collator is _right_padding_collator
