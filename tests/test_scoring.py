"""Token log-probabilities of given text on the embedded model: exact, batch-invariant, and consistent with
what the model itself generates."""

from __future__ import annotations

import numpy as np
import pytest

from labscale.backends import Decoding, load_backend
from labscale.errors import InvalidParameter
from labscale.scoring import choice_logprobs, continuation_logprobs, zlib_entropy

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]


@pytest.fixture(scope="module")
def backend(embedded_model_dir):
    b = load_backend("smollm2-135m", scoring=True)  # fp32, as the library scores (generation defaults to bf16)
    b.load()
    return b


def _manual(backend, prompt: str, continuation: str) -> np.ndarray:
    """The same quantity from one unbatched forward pass, written out by hand."""
    import torch

    from labscale.finetune import encode_prompt

    head = encode_prompt(backend, prompt)
    tail = backend.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.inference_mode():
        logp = torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), dim=-1)
    return np.array([logp[len(head) - 1 + j, tok].item() for j, tok in enumerate(tail)])


def test_matches_a_hand_computed_forward_pass_and_is_batch_invariant(backend):
    prompt = backend.prompt_text(FRANCE)
    pairs = [
        (prompt, "Paris"),
        (prompt, "The capital of France is Paris, a large city."),
        (backend.prompt_text([{"role": "user", "content": "Say hi."}]), "Hi there!"),
    ]
    batched = continuation_logprobs(backend, [p for p, _ in pairs], [c for _, c in pairs], batch_size=3, progress=False)
    for (p, c), scored in zip(pairs, batched, strict=True):
        np.testing.assert_allclose(scored.token_logprobs, _manual(backend, p, c), atol=2e-4)
        assert scored.total == pytest.approx(scored.token_logprobs.sum())
        assert scored.total < 0
    one_by_one = continuation_logprobs(
        backend, [p for p, _ in pairs], [c for _, c in pairs], batch_size=1, progress=False
    )
    for a, b in zip(batched, one_by_one, strict=True):
        np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=2e-4)


def test_greedy_reply_scores_as_the_generation_reported(backend):
    """The log-probability the backend recorded while generating greedily equals the scored reply (+ its stop)."""
    gen = backend.generate([FRANCE], Decoding(max_new_tokens=12), progress=False)[0]
    eos = backend.tokenizer.eos_token
    scored = continuation_logprobs(
        backend, [backend.prompt_text(FRANCE)], [gen.text + (eos if gen.extra["hit_stop"] else "")], progress=False
    )[0]
    assert scored.total == pytest.approx(gen.extra["logprob"], abs=0.05)


def test_multiple_choice_prefers_the_true_answer(backend):
    prompt = backend.prompt_text(FRANCE)
    scores = choice_logprobs(backend, prompt, ["Paris", "Banana", "Seventeen"], progress=False)
    assert scores.argmax() == 0


def test_raw_text_scoring_conditions_on_bos_or_drops_the_first_token(backend):
    scored = continuation_logprobs(backend, [""], ["Once upon a time there was a cat."], progress=False)[0]
    n_tokens = len(backend.tokenizer("Once upon a time there was a cat.", add_special_tokens=False)["input_ids"])
    expected = n_tokens if backend.tokenizer.bos_token_id is not None else n_tokens - 1
    assert len(scored.token_logprobs) == expected


def test_bad_input_is_rejected_before_scoring(backend):
    with pytest.raises(InvalidParameter, match="differ in length"):
        continuation_logprobs(backend, ["a"], ["b", "c"])
    with pytest.raises(InvalidParameter, match="empty continuation"):
        continuation_logprobs(backend, ["a"], [""])
    with pytest.raises(InvalidParameter, match="chat APIs return no log-probabilities"):
        continuation_logprobs(object(), ["a"], ["b"])


def test_zlib_entropy_of_repetitive_text_is_smaller():
    assert zlib_entropy("abc" * 100) < zlib_entropy("".join(chr(97 + (i * 7919) % 26) for i in range(300)))
    assert zlib_entropy("") == len(__import__("zlib").compress(b""))
