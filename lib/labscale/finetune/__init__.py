"""LoRA / QLoRA fine-tuning of a local Hugging Face model on one task's train split (the study's "fine-tuned" regime).

The training loop is trl's :class:`~trl.SFTTrainer` with a peft :class:`~peft.LoraConfig`, as in the study; nothing
here re-implements optimisation. What this package adds is the bookkeeping the original scripts got wrong:

* **The prompt trained on is the prompt evaluated on.** Every train example becomes a prompt/completion pair whose
  prompt is the task's zero-shot messages rendered by :meth:`labscale.backends.hf.HFBackend.prompt_text` (chat
  template, or the plain ``User:/Assistant:`` fallback) and tokenized exactly as the backend tokenizes it for
  generation, so train and test prompts are token-for-token identical. (The original fact-checking OpenAI data
  had no instruction, abstention trained and evaluated with different instructions, and Falcon's ChatML was
  rewritten only at evaluation time.)
* **The completion ends with the tokenizer's EOS token**, so the tuned model learns to stop after its answer.
* **No truncation.** An example whose prompt + completion exceeds ``max_length`` is dropped and counted, never cut:
  trl's ``keep_start`` truncation (and the original ``max_seq_length``) can silently cut away the answer.
* **Epochs mean epochs.** ``epochs=1`` is one pass over the training examples. The original entity-resolution and
  fact-checking scripts set ``max_steps`` to the number of training examples with batch 1 x gradient accumulation
  4; a Trainer "step" is one *optimizer* step (4 examples), so those runs made about **4 passes**, not the one
  epoch the paper reports. ``step_semantics="original"`` reproduces that arithmetic on purpose; either way the
  effective number of epochs is computed and recorded (:func:`plan_steps`).
* **Loss on the answer only** (``completion_only_loss=True``, trl's prompt-completion masking) is the default of
  the ``"cpu"`` preset; the ``"paper"`` preset keeps the original whole-sequence loss.
* Checkpoints (``output_dir/checkpoints``) let an interrupted run resume to the same weights; the final adapter
  (``output_dir/adapter``) carries a machine-readable card (``labscale_card.json``) and a README model card.

The package: :mod:`.config` (:class:`FinetuneConfig`, presets, step arithmetic), :mod:`.data` (the training set),
:mod:`.training` (:func:`finetune`, :func:`finetune_tasks`, requests, resuming) and :mod:`.adapter` (the result, the
model card, checking, merging and listing checkpoints); every public name is importable from ``labscale.finetune``.

Evaluate a tuned adapter through the ordinary backend: ``load_backend(f"smollm2-135m?adapter={adapter_dir}")``
(call :func:`check_adapter` first to refuse an adapter made for another base model).
"""

from __future__ import annotations

from .adapter import (
    ADAPTER_WEIGHTS,
    CARD_FILE,
    REQUEST_FILE,
    AdapterResult,
    build_card,
    check_adapter,
    complete_checkpoints,
    finished_adapter,
    list_checkpoints,
    lora_summary,
    merge_adapter,
    peak_memory_mb,
    render_model_card,
    save_adapter,
    training_hardware,
    use_spec,
)
from .config import (
    STEP_SEMANTICS,
    STUDY_TRAINING,
    FinetuneConfig,
    StepPlan,
    check_config,
    check_train_size,
    plan_steps,
    samples_for_steps,
    study_epochs_table,
    updates_per_epoch,
)
from .data import TrainData, TrainingSet, build_training_set, encode_prompt, select_train_examples, training_rows
from .training import (
    finetune,
    finetune_tasks,
    lora_config,
    request_fingerprint,
    resolve_base,
    train_each,
    training_request,
    training_summary,
)

__all__ = [
    "ADAPTER_WEIGHTS",
    "CARD_FILE",
    "REQUEST_FILE",
    "STEP_SEMANTICS",
    "STUDY_TRAINING",
    "AdapterResult",
    "FinetuneConfig",
    "StepPlan",
    "TrainData",
    "TrainingSet",
    "build_card",
    "build_training_set",
    "check_adapter",
    "check_config",
    "check_train_size",
    "complete_checkpoints",
    "encode_prompt",
    "finetune",
    "finetune_tasks",
    "finished_adapter",
    "list_checkpoints",
    "lora_config",
    "lora_summary",
    "merge_adapter",
    "peak_memory_mb",
    "plan_steps",
    "render_model_card",
    "request_fingerprint",
    "resolve_base",
    "samples_for_steps",
    "save_adapter",
    "select_train_examples",
    "study_epochs_table",
    "train_each",
    "training_hardware",
    "training_request",
    "training_rows",
    "training_summary",
    "updates_per_epoch",
    "use_spec",
]
