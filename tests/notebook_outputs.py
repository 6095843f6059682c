"""The end-to-end chapter tests' shared parts: a tiny fine-tune's options, and reading an executed chapter notebook
back (its code-cell outputs and their text)."""

from __future__ import annotations

import nbformat

#: ``finetune_options`` for a chapter that trains inside its test: 8 examples, batch 2 -> 4 steps, a checkpoint
#: every 4 samples, LoRA of rank 4 on the top 2 layers
TINY_FINETUNE = {
    "train_fraction": 8 / 600,
    "per_device_batch_size": 2,
    "max_length": 256,
    "checkpoint_every_samples": 4,
    "top_layers": 2,
    "r": 4,
    "alpha": 8,
    "warmup_steps": 1,
}


def raw_dumps(outputs: list) -> list[str]:
    """Cell results shown as a bare Python dict, list or tuple (plain text only, no table or figure): a page
    should show a table instead."""
    plain = [
        o["data"]["text/plain"] for o in outputs if o.get("output_type") == "execute_result" and len(o["data"]) == 1
    ]
    return [text for text in plain if text.lstrip()[:1] in ("{", "[", "(")]


def executed_outputs(path) -> tuple[list, str]:
    """Every code-cell output of the executed notebook at ``path`` (errors included, for the caller to assert
    against) and their plain text, HTML and stream text joined into one string. A cell result printed as a raw
    dictionary or list fails here: the book shows tables."""
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert raw_dumps(outputs) == [], f"{path}: cell results shown as raw Python containers"
    text = "".join(
        o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/html", "") + o.get("text", "")
        for o in outputs
    )
    return outputs, text
