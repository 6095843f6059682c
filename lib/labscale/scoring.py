"""Token log-probabilities of given text under a local model: the white-box measurements behind log-likelihood
multiple choice (TruthfulQA MC1/MC2), membership inference and canary exposure.

Every function takes an :class:`~labscale.backends.hf.HFBackend` (with or without a LoRA adapter) and scores a
*continuation* given a *prompt*: the prompt is encoded exactly as the backend encodes it for generation (chat
template included, see :func:`labscale.finetune.encode_prompt`), the continuation is appended without special
tokens, and the model's log-probability of each continuation token is read off one forward pass. API models
cannot be scored this way (chat APIs return no log-probabilities of given text), which is why these
measurements are for open models only.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import progress as progress_bars
from .errors import InvalidParameter, check_range


@dataclass
class ScoredText:
    """Per-token log-probabilities of one continuation (natural log), with the token count of its prompt."""

    token_logprobs: np.ndarray
    prompt_tokens: int

    @property
    def total(self) -> float:
        """log p(continuation | prompt): the sum over its tokens."""
        return float(self.token_logprobs.sum())

    @property
    def mean(self) -> float:
        """Mean token log-probability (minus the loss, in nats per token)."""
        return float(self.token_logprobs.mean()) if len(self.token_logprobs) else 0.0


def _check_backend(backend) -> None:
    from .backends.hf import HFBackend

    if not isinstance(backend, HFBackend):
        raise InvalidParameter(
            f"log-probability scoring needs a local Hugging Face model, got a {type(backend).__name__} "
            f"({getattr(backend, 'model_id', '?')}); chat APIs return no log-probabilities of given text"
        )


def continuation_logprobs(
    backend,
    prompts: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 16,
    desc: str | None = None,
    progress: bool = True,
    trunk=None,
) -> list[ScoredText]:
    """log p(each continuation token | prompt, earlier continuation tokens) for every (prompt, continuation) pair.

    ``prompts`` are rendered prompt strings (``backend.prompt_text(messages)``, or ``""`` to score a raw text from
    the start; its first token is then conditioned on the tokenizer's BOS token when it has one, else not
    scored). Pairs are batched by length with right padding; results keep the input order. ``trunk`` (a
    :class:`~labscale.finetune.trunk.SharedTrunk`) reuses the frozen layers' states across models that share them.
    """
    _check_backend(backend)
    if len(prompts) != len(continuations):
        raise InvalidParameter(f"prompts and continuations differ in length: {len(prompts)} vs {len(continuations)}")
    check_range("batch_size", batch_size, 1, None, integer=True)
    from .finetune import encode_prompt

    tokenizer = backend.tokenizer
    encoded: list[tuple[list[int], list[int]]] = []
    for prompt, continuation in zip(prompts, continuations, strict=True):
        if not continuation:
            raise InvalidParameter("cannot score an empty continuation")
        head = encode_prompt(backend, prompt) if prompt else []
        if not head and tokenizer.bos_token_id is not None:
            head = [tokenizer.bos_token_id]
        tail = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
        if not head:  # nothing to condition the first token on: it is not scored
            head, tail = tail[:1], tail[1:]
        encoded.append((head, tail))
    return _score(backend, encoded, batch_size=batch_size, desc=desc, progress=progress, trunk=trunk)


def sequence_logprobs(
    backend,
    sequences: Sequence[Sequence[int]],
    *,
    batch_size: int = 16,
    desc: str | None = None,
    progress: bool = True,
    trunk=None,
) -> list[ScoredText]:
    """log p(token t | tokens < t) for every token but the first of each token-id sequence (e.g. a training row
    exactly as it was trained on); ``trunk`` as in :func:`continuation_logprobs`."""
    _check_backend(backend)
    check_range("batch_size", batch_size, 1, None, integer=True)
    encoded = []
    for seq in sequences:
        if len(seq) < 2:
            raise InvalidParameter(f"a sequence needs at least 2 tokens to be scored, got {len(seq)}")
        encoded.append((list(seq[:1]), list(seq[1:])))
    return _score(backend, encoded, batch_size=batch_size, desc=desc, progress=progress, trunk=trunk)


def _score(
    backend,
    encoded: list[tuple[list[int], list[int]]],
    *,
    batch_size: int,
    desc: str | None,
    progress: bool,
    trunk=None,
) -> list[ScoredText]:
    """Score (head, tail) token-id pairs: the log-probability of each tail token, batched by length, right-padded;
    from the shared ``trunk``'s states through the top layers only, where the model reproduces its full pass so."""
    import torch

    from .backends.hf import chosen_logprobs
    from .finetune.trunk import pad_states, right_padded, top_only

    tokenizer, model = backend.tokenizer, backend.model
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    split = trunk is not None and bool(order) and trunk.usable(model, encoded[order[0]][0] + encoded[order[0]][1])
    results: list[ScoredText | None] = [None] * len(encoded)
    with progress_bars.bar(total=len(order), desc=desc or "scoring", disable=not progress, leave=False) as bar:
        for offset in range(0, len(order), batch_size):
            chunk = order[offset : offset + batch_size]
            sequences = [encoded[i][0] + encoded[i][1] for i in chunk]
            ids, mask = right_padded(sequences, pad)
            width = ids.shape[1]
            device = model.device
            # the output head runs from the first position that predicts a scored token on (the prompts' own
            # positions before it need no logits): ``first`` is where the kept logits start
            first = min(len(encoded[i][0]) for i in chunk) - 1
            keep = {"logits_to_keep": width - first}
            if split:
                states = trunk.states(model, sequences)
                with torch.inference_mode(), top_only(model, trunk.first_layer):
                    embeds = pad_states(states, width).to(device=device, dtype=model.dtype)
                    logits = model(inputs_embeds=embeds, attention_mask=mask.to(device), **keep).logits.float()
            else:
                with torch.inference_mode():
                    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **keep).logits.float()
            # each position's logits normalised at the token that follows (no log-softmax of every logit)
            token_lp = chosen_logprobs(logits[:, :-1].unbind(1), ids[:, first + 1 :].to(device)).cpu().numpy()
            for row, i in enumerate(chunk):
                head, tail = encoded[i]
                start = len(head) - 1 - first  # the kept position predicting the first continuation token
                results[i] = ScoredText(token_lp[row, start : start + len(tail)].astype(float), len(head))
            bar.update(len(chunk))
    return results  # type: ignore[return-value]


def choice_logprobs(backend, prompt: str, choices: Sequence[str], **options) -> np.ndarray:
    """Total log-probability of each answer choice after one prompt (log-likelihood multiple choice)."""
    if not choices:
        raise InvalidParameter("choice_logprobs needs at least one choice")
    return np.array([s.total for s in continuation_logprobs(backend, [prompt] * len(choices), choices, **options)])


def zlib_entropy(text: str) -> int:
    """Length in bytes of the zlib-compressed UTF-8 text: the reference entropy of the zlib membership score."""
    return len(zlib.compress(text.encode("utf-8")))
