"""OpenAIBackend against a real OpenAI-compatible server (``transformers serve`` on the embedded SmolLM2, CPU).

No mocks of the client or the server: the only stand-in is fault injection at the HTTP transport, a wrapper
around the real ``httpx2.HTTPTransport`` that fails chosen requests and forwards the rest to the server.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback

import httpx2
import pytest

from labscale.backends import Decoding, load_backend, parse_model_spec
from labscale.backends.openai_api import OpenAIBackend, normalize_base_url
from labscale.cache import ResponseCache
from labscale.errors import InvalidParameter
from local_server import LocalServer

pytestmark = pytest.mark.slow

DECODING = Decoding(max_new_tokens=10, temperature=0.0, top_p=1.0, seed=0)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


CONVERSATIONS = [
    user("What is the capital of France?"),
    user("What is the capital of Japan?"),
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Say hello."}],
    user("What color is the sky on a clear day?"),
]
SECRET = "sk-labscale-test-SECRET-0123456789abcdef"


# -- the server and transports -------------------------------------------------------------------------------
def spec_for(server: LocalServer, **options) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"base_url": server.base_url, **options}.items())
    return f"openai:{server.model}?{query}"


class FaultyTransport(httpx2.BaseTransport):
    """Counts every attempt; ``fault(n, request)`` may return a fault for attempt n, else the request goes through.

    A fault is an ``httpx2.Response`` to return or an exception to raise.
    """

    def __init__(self, fault=None):
        self.inner = httpx2.HTTPTransport()
        self.fault = fault
        self.lock = threading.Lock()
        self.requests: list[httpx2.Request] = []

    @property
    def attempts(self) -> int:
        return len(self.requests)

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
            n = len(self.requests)
        injected = self.fault(n, request) if self.fault else None
        if isinstance(injected, BaseException):
            raise injected
        if injected is not None:
            return injected
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def backend_with(server, transport, cache=None, **options) -> OpenAIBackend:
    return OpenAIBackend.from_spec(
        parse_model_spec(spec_for(server, **options)), cache=cache, http_client=httpx2.Client(transport=transport)
    )


def error_500(_n=None, _request=None) -> httpx2.Response:
    return httpx2.Response(500, json={"error": {"message": "injected server error", "type": "server_error"}})


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    """A fault-free run of CONVERSATIONS through load_backend, with its cache file (shared by the tests)."""
    cache = ResponseCache(tmp_path_factory.mktemp("reference") / "responses.sqlite")
    backend = load_backend(spec_for(server, concurrency=2), cache=cache)
    generations = backend.generate(CONVERSATIONS, DECODING, progress=False)
    yield backend, cache, generations
    backend.close()
    cache.close()


# -- a real server ---------------------------------------------------------------------------------------------
def test_replies_usage_and_metadata(reference, server):
    backend, cache, generations = reference
    assert "Paris" in generations[0].text
    assert "Tokyo" in generations[1].text
    for g in generations:
        assert g.text.strip() and not g.cached
        assert g.prompt_tokens > 0 and 0 < g.completion_tokens <= DECODING.max_new_tokens
        assert g.extra["finish_reason"] in ("stop", "length")
        assert g.extra["response_model"].startswith(server.model)  # transformers serve reports "<path>@main"
        assert set(g.extra) == {"finish_reason", "system_fingerprint", "response_model"}
    assert backend.stats.model_calls == len(CONVERSATIONS) and backend.stats.cache_hits == 0
    assert backend.stats.prompt_tokens == sum(g.prompt_tokens for g in generations)
    assert backend.identity() == {
        "backend": "openai",
        "model": server.model,
        "revision": None,
        "base_url": server.base_url,
    }
    assert len(cache) == len(CONVERSATIONS)


def test_second_call_is_served_from_the_cache(reference, server):
    _, cache, first = reference
    transport = FaultyTransport()
    backend = backend_with(server, transport, cache)
    again = backend.generate(CONVERSATIONS, DECODING, progress=False)
    assert backend.stats.model_calls == 0 and backend.stats.cache_hits == len(CONVERSATIONS)
    assert transport.attempts == 0
    assert all(g.cached for g in again)
    assert [g.text for g in again] == [g.text for g in first]
    assert [(g.prompt_tokens, g.completion_tokens, g.extra) for g in again] == [
        (g.prompt_tokens, g.completion_tokens, g.extra) for g in first
    ]


def test_decoding_is_sent_explicitly(server, cache, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    transport = FaultyTransport()
    backend = backend_with(server, transport, cache)
    decoding = Decoding(max_new_tokens=3, temperature=0.7, top_p=0.9, seed=11)
    [generation] = backend.generate(CONVERSATIONS[:1], decoding, progress=False)
    [body] = transport.bodies()
    assert body["model"] == server.model
    assert body["messages"] == CONVERSATIONS[0]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["n"]) == (0.7, 0.9, 3, 11, 1)
    assert generation.completion_tokens <= 3
    assert transport.requests[0].headers["authorization"] == "Bearer EMPTY"


# -- retries and concurrency ------------------------------------------------------------------------------------
def test_transient_faults_are_retried_and_nothing_is_lost(reference, server, cache):
    _, _, clean = reference
    faults = {
        1: httpx2.Response(
            429,
            headers={"retry-after": "0.05"},
            json={"error": {"message": "injected rate limit", "type": "rate_limit"}},
        ),
        2: error_500(),
        3: httpx2.ReadTimeout("injected read timeout"),
    }
    transport = FaultyTransport(lambda n, request: faults.get(n))
    backend = backend_with(server, transport, cache, concurrency=2)
    generations = backend.generate(CONVERSATIONS, DECODING, progress=False)
    assert transport.attempts == len(CONVERSATIONS) + len(faults)
    assert backend.retries == len(faults)
    assert backend.retry_record() == {"total": 3, "by_cause": {"429": 1, "500": 1, "timeout": 1}}
    assert backend.stats.model_calls == len(CONVERSATIONS)
    assert [g.text for g in generations] == [g.text for g in clean]
    assert [(g.prompt_tokens, g.completion_tokens) for g in generations] == [
        (g.prompt_tokens, g.completion_tokens) for g in clean
    ]
    assert len(cache) == len(CONVERSATIONS)


# The longest conversation: batches are ordered by length, so BAD is sent after every other item.
BAD = user("This request always fails, whatever the server is asked to answer about it.")


def _fail_bad(n, request):
    return error_500() if b"always fails" in request.content else None


def test_exhausted_retries_keep_completed_items_and_resume(reference, server, cache):
    _, _, clean = reference
    conversations = CONVERSATIONS[:3] + [BAD]  # BAD is submitted last (longest), so every other item has started
    transport = FaultyTransport(_fail_bad)
    backend = backend_with(server, transport, cache, concurrency=2, max_retries=1)
    with pytest.raises(RuntimeError) as failure:
        backend.generate(conversations, DECODING, progress=False)
    message = str(failure.value)
    assert "3 of the batch's 4 items were stored" in message and "resumes from the cache" in message
    assert "HTTP 500" in message
    bad_attempts = [r for r in transport.requests if b"always fails" in r.content]
    assert len(bad_attempts) == 2  # the first try and max_retries=1 retry
    assert len(cache) == 3

    healthy = FaultyTransport()
    rerun = backend_with(server, healthy, cache, concurrency=2, max_retries=1)
    generations = rerun.generate(conversations, DECODING, progress=False)
    assert healthy.attempts == 1 and healthy.bodies()[0]["messages"] == BAD
    assert rerun.stats.model_calls == 1 and rerun.stats.cache_hits == 3
    assert [g.cached for g in generations] == [True, True, True, False]
    assert [g.text for g in generations[:3]] == [g.text for g in clean[:3]]
    assert generations[3].text and len(cache) == 4


def test_a_failing_batch_stops_sending(server, cache):
    conversations = [user("always fails")] + CONVERSATIONS[:3]  # the shortest, so it is sent first
    transport = FaultyTransport(_fail_bad)
    backend = backend_with(server, transport, cache, concurrency=1, max_retries=1)
    with pytest.raises(RuntimeError) as failure:
        backend.generate(conversations, DECODING, progress=False)
    assert "0 of the batch's 4 items were stored in the response cache (3 not sent)" in str(failure.value)
    assert transport.attempts == 2 and len(cache) == 0


def test_a_run_that_failed_on_timeouts_blames_the_timeouts(server, cache):
    """A real timeout (a 1 ms limit against the real server) after one injected 429: the error counts the causes,
    names the timeout first, with its fix, and does not blame the rate limit."""

    def rate_limit_first(n, request):
        return (
            httpx2.Response(
                429,
                headers={"retry-after": "0"},
                json={"error": {"message": "injected rate limit", "type": "rate_limit"}},
            )
            if n == 1
            else None
        )

    transport = FaultyTransport(rate_limit_first)
    backend = backend_with(server, transport, cache, concurrency=1, max_retries=2, timeout=0.001)
    with pytest.raises(RuntimeError) as failure:
        backend.generate(CONVERSATIONS[:1], DECODING, progress=False)
    message = str(failure.value)
    assert "1 of 1 requests" in message and "failed: timeout x1, after 2 retries (HTTP 429 x1, timeout x1)" in message
    assert "e.g. APITimeoutError" in message and "RateLimitError" not in message
    assert "timeout of 0.001 s" in message and "model option timeout=SECONDS" in message
    assert "Rerunning resumes from the cache" in message  # timeouts are transient
    assert transport.attempts == 3 and len(cache) == 0
    assert backend.retry_record() == {"total": 2, "by_cause": {"429": 1, "timeout": 1}}


@pytest.mark.parametrize(
    "status, fix",
    [(401, r"refused the API key \(HTTP 401\).*LABSCALE_TEST_KEY"), (404, r"knows no model .*\(HTTP 404\)")],
)
def test_errors_that_are_not_transient_say_so(server, cache, monkeypatch, status, fix):
    monkeypatch.setenv("LABSCALE_TEST_KEY", SECRET)

    def refuse(n, request):
        return httpx2.Response(status, json={"error": {"message": "injected refusal", "type": "invalid_request"}})

    transport = FaultyTransport(refuse)
    backend = backend_with(server, transport, cache, api_key_env="LABSCALE_TEST_KEY", concurrency=1)
    with pytest.raises(RuntimeError) as failure:
        backend.generate(CONVERSATIONS[:2], DECODING, progress=False)
    message = str(failure.value)
    assert f"failed: HTTP {status} x1, with no retry" in message
    assert "0 of the batch's 2 items were stored in the response cache (1 not sent)" in message
    assert "resumes" not in message and "Not transient" in message
    assert re.search(fix, message)
    assert transport.attempts == 1 and backend.retry_record()["total"] == 0  # never retried


def test_api_model_alone_through_the_runner(server, tmp_path, monkeypatch):
    """The domain-adaptation chapter's cells for an API model alone (finetune_tasks=[]), on the real server: the
    record lands in the folder of the model string without client options, its manifest holds the run's retries by
    cause, and a rerun with another timeout/concurrency is the same record (reused, no request sent)."""
    from labscale import finetune
    from labscale.records import find_runs, read_run
    from labscale.runner import plan_experiment, run_experiment

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache = ResponseCache(tmp_path / "c.sqlite")
    models = [spec_for(server, timeout=60)]
    plan = plan_experiment(
        models, ["fact_checking"], [0], limit=2, output_dir=tmp_path / "runs", cache=cache, n_resamples=100
    )
    tuned = finetune.finetune_tasks(
        models[0], [], config=finetune.FinetuneConfig.preset("cpu"), output_root=tmp_path / "adapters"
    )
    assert tuned == {} and finetune.training_summary(tuned).empty
    plan.add_adapters({task: result.adapter_dir for task, result in tuned.items()})
    faults = {
        1: httpx2.Response(429, headers={"retry-after": "0"}, json={"error": {"message": "slow down"}}),
        2: httpx2.ReadTimeout("injected read timeout"),
    }
    [label] = plan.backends
    assert label == spec_for(server)  # the label leaves out timeout=60
    plan.backends[label] = backend_with(server, FaultyTransport(lambda n, request: faults.get(n)), cache, timeout=60)
    results = run_experiment(plan, progress=False)
    [run] = find_runs(tmp_path / "runs")
    assert run.parent.parent.name == parse_model_spec(spec_for(server)).slug and "timeout" not in str(run)
    record = read_run(run)
    assert record["manifest"]["retries"] == {"total": 2, "by_cause": {"429": 1, "timeout": 1}}
    assert record["params"]["model"] == label and record["manifest"]["model"]["spec"] == models[0]
    assert set(results["model"]) == {label}
    written = record["manifest"]["written_at"]

    again = plan_experiment(
        [spec_for(server, timeout=5, concurrency=1, max_retries=1)],
        ["fact_checking"],
        [0],
        limit=2,
        output_dir=tmp_path / "runs",
        cache=cache,
        n_resamples=100,
    )
    again.backends[label] = backend_with(server, Forbidden(), cache, timeout=5)
    run_experiment(again, progress=False)
    assert find_runs(tmp_path / "runs") == [run] and read_run(run)["manifest"]["written_at"] == written


# -- keys -------------------------------------------------------------------------------------------------------
class Forbidden(httpx2.BaseTransport):
    def handle_request(self, request):
        pytest.fail(f"no HTTP request may be sent, got {request.method} {request.url}")


@pytest.mark.parametrize(
    "text",
    [
        "openai:gpt-4-1106-preview",
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "openai:gpt-4-1106-preview?base_url=https://API.openai.com/v1/",
    ],
)
def test_missing_key_for_openai_fails_before_any_request(monkeypatch, text):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InvalidParameter, match="OPENAI_API_KEY"):
        load_backend(text)
    with pytest.raises(InvalidParameter, match="OPENAI_API_KEY"):
        OpenAIBackend.from_spec(parse_model_spec(text), http_client=httpx2.Client(transport=Forbidden()))


def test_missing_key_names_the_chosen_variable(monkeypatch):
    monkeypatch.delenv("LABSCALE_TEST_KEY", raising=False)
    with pytest.raises(InvalidParameter, match="LABSCALE_TEST_KEY"):
        OpenAIBackend(
            "gpt-4-1106-preview", api_key_env="LABSCALE_TEST_KEY", http_client=httpx2.Client(transport=Forbidden())
        )


def test_local_servers_need_no_key(monkeypatch, server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    transport = FaultyTransport()
    backend = OpenAIBackend(server.model, http_client=httpx2.Client(transport=transport))
    assert backend.identity()["base_url"] == server.base_url
    backend.generate(CONVERSATIONS[:1], Decoding(max_new_tokens=2), progress=False)
    assert transport.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_key_never_reaches_cache_identity_errors_or_logs(monkeypatch, server, cache, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LABSCALE_TEST_KEY", SECRET)
    transport = FaultyTransport()
    backend = backend_with(server, transport, cache, api_key_env="LABSCALE_TEST_KEY")
    backend.generate(CONVERSATIONS[:1], DECODING, progress=False)
    assert transport.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # the key is used ...

    # ... but a server that echoes it back in an error does not get it into our exception
    def echo_key(n, request):
        return httpx2.Response(
            401,
            json={"error": {"message": f"Incorrect API key provided: {SECRET} ({request.headers['authorization']})"}},
        )

    leaky = backend_with(server, FaultyTransport(echo_key), cache, api_key_env="LABSCALE_TEST_KEY")
    with pytest.raises(RuntimeError) as failure:
        leaky.generate([user("another question")], DECODING, progress=False)
    assert "HTTP 401" in str(failure.value)
    error_text = "".join(traceback.format_exception(failure.value))
    cache.close()
    stored = b"".join(p.read_bytes() for p in cache.path.parent.glob(cache.path.name + "*"))
    assert len(stored) > 0
    for where in (
        json.dumps(backend.identity()),
        repr(backend),
        str(backend.__dict__),
        error_text,
        caplog.text,
        stored.decode("latin-1"),
    ):
        assert SECRET not in where
        assert SECRET[8:] not in where  # nor a masked-prefix form


# -- parameters -------------------------------------------------------------------------------------------------
def test_base_url_is_normalised_and_credentials_refused():
    assert normalize_base_url("HTTP://LocalHost:80/v1/") == "http://localhost/v1"
    assert normalize_base_url("https://api.openai.com:443/v1") == "https://api.openai.com/v1"
    assert normalize_base_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    with pytest.raises(InvalidParameter) as failure:
        normalize_base_url(f"https://user:{SECRET}@example.org/v1")
    assert SECRET not in str(failure.value)
    for bad in ("ftp://example.org", "example.org/v1", "http://example.org/v1?key=1", ""):
        with pytest.raises(InvalidParameter):
            normalize_base_url(bad)


def test_options_are_validated(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    backend = load_backend("openai:gpt-4-1106-preview?concurrency=3&max_retries=2&timeout=5")
    assert (backend.concurrency, backend.max_retries, backend.timeout, backend.batch_size) == (3, 2, 5.0, 12)
    assert backend.identity() == {
        "backend": "openai",
        "model": "gpt-4-1106-preview",
        "revision": None,
        "base_url": "https://api.openai.com/v1",
    }
    with pytest.raises(InvalidParameter):
        load_backend("openai:gpt-4-1106-preview?concurrency=0")
    with pytest.raises(InvalidParameter) as failure:
        OpenAIBackend("gpt-4-1106-preview", api_key_env=SECRET)  # the key pasted where its NAME belongs
    assert SECRET not in str(failure.value)
    with pytest.raises(InvalidParameter):
        OpenAIBackend("gpt-4-1106-preview", concurrency=0)
