"""The response cache: keys, persistence across connections, crash safety, and secrets."""

from __future__ import annotations

import sqlite3

from labscale.backends.base import Decoding
from labscale.cache import ResponseCache, request_key

MESSAGES = [{"role": "user", "content": "Claim: ice melts. Evidence: it does."}]


def test_key_is_canonical_and_sensitive_to_every_field():
    base = {
        "backend": "hf",
        "model": "m",
        "revision": "r",
        "messages": MESSAGES,
        "decoding": Decoding().cache_dict(),
        "sample_index": 0,
    }
    reordered = dict(reversed(list(base.items())))
    assert request_key(base) == request_key(reordered)
    variants = [
        {**base, "model": "m2"},
        {**base, "revision": "r2"},
        {**base, "messages": [{"role": "user", "content": "Claim: ice melts. Evidence: it does!"}]},
        {**base, "decoding": Decoding(max_new_tokens=11).cache_dict()},
        {**base, "decoding": Decoding(temperature=0.7).cache_dict()},
        {**base, "decoding": Decoding(temperature=0.7, seed=1).cache_dict()},
        {**base, "decoding": Decoding(temperature=0.7, top_p=0.9).cache_dict()},
        {**base, "sample_index": 1},
        {**base, "base_url": "http://127.0.0.1:9/v1"},
    ]
    keys = {request_key(v) for v in variants}
    assert len(keys) == len(variants) and request_key(base) not in keys


def test_put_get_round_trip_across_connections(tmp_path):
    path = tmp_path / "c.sqlite"
    doc = {"backend": "hf", "model": "m", "messages": MESSAGES}
    first = ResponseCache(path)
    first.put(request_key(doc), doc, "SUPPORTS", prompt_tokens=12, completion_tokens=2, extra={"logprob": -0.5})
    first.close()
    hit = ResponseCache(path).get(request_key(doc))
    assert (hit.text, hit.prompt_tokens, hit.completion_tokens, hit.extra) == ("SUPPORTS", 12, 2, {"logprob": -0.5})
    assert ResponseCache(path).get(request_key({**doc, "model": "other"})) is None


def test_rows_hold_the_full_request_document(tmp_path):
    path = tmp_path / "c.sqlite"
    doc = {
        "backend": "openai",
        "model": "gpt-x",
        "base_url": "http://127.0.0.1:1/v1",
        "messages": MESSAGES,
        "decoding": Decoding().as_dict(),
        "sample_index": 0,
    }
    ResponseCache(path).put(request_key(doc), doc, "REFUTES")
    row = sqlite3.connect(path).execute("SELECT key, backend, model, request FROM responses").fetchone()
    assert row[0] == request_key(doc) and row[1] == "openai" and row[2] == "gpt-x"
    assert "ice melts" in row[3] and "max_new_tokens" in row[3]


def test_greedy_cache_keys_drop_sampling_only_settings(embedded_model_dir, tmp_path):
    from labscale.backends import load_backend

    backend = load_backend("smollm2-135m", cache=ResponseCache(tmp_path / "c.sqlite"))  # no weights load

    def key(decoding, sample_index=0):
        return request_key(backend.request_document(MESSAGES, decoding, sample_index))

    greedy = key(Decoding(max_new_tokens=5))
    assert key(Decoding(max_new_tokens=5, seed=7)) == greedy
    assert key(Decoding(max_new_tokens=5, top_p=0.3, seed=2**31)) == greedy
    assert key(Decoding(max_new_tokens=6)) != greedy
    assert key(Decoding(max_new_tokens=5), sample_index=1) != greedy  # explicit repeated draws stay distinct
    sampled = {key(Decoding(max_new_tokens=5, temperature=0.7, seed=s)) for s in (0, 1)}
    sampled.add(key(Decoding(max_new_tokens=5, temperature=0.7, top_p=0.9)))
    assert len(sampled) == 3 and greedy not in sampled
    assert backend._model is None
