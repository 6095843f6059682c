"""Any OpenAI-compatible chat API — OpenAI itself, a vLLM server, ``transformers serve`` — through one code path.

The official ``openai`` client does the HTTP work: it retries 408/409/429/5xx responses, timeouts and dropped
connections with exponential backoff and jitter (0.5 s doubling to 8 s, honouring ``Retry-After`` up to two
minutes), so this module has no retry loop of its own. It adds what a study needs on top:

* every decoding parameter sent explicitly (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``n=1``);
* token usage, ``finish_reason``, ``system_fingerprint`` and the model name the server reports, per reply;
* bounded concurrency (a thread pool of ``concurrency`` workers), with each reply stored in the response cache
  the moment it arrives, so a run that fails or is interrupted resumes from the cache;
* every retry counted by cause (``timeout``, ``connection``, the HTTP status such as ``429``) for the run
  manifest, and a failure message that names every cause and says whether a rerun can help (a timeout or a 429
  may pass; a 401 or 404 will not until it is fixed);
* the API key read from an environment variable only, and kept out of identities, cache rows, error messages
  and logs.

Few-shot prompts repeat their instruction and shots before every item; where the local HF backend reuses that
prefix's KV cache itself (``prefix_cache``), a vLLM server does it on its own (automatic prefix caching, on by
default since vLLM's V1 engine), and OpenAI caches prompt prefixes of 1,024 tokens or more. Nothing is sent for it.

Model strings::

    openai:gpt-4-1106-preview                                   # key from OPENAI_API_KEY
    openai:gpt-3.5-turbo-0613?concurrency=8&max_retries=8
    openai:/models/SmolLM2-135M-Instruct?base_url=http://127.0.0.1:8000/v1   # transformers serve / vLLM
    openai:fc?base_url=http://127.0.0.1:8000/v1&adapter=runs/adapters/smollm2-135m/fact_checking/adapter

The last is a LoRA adapter served by vLLM under the name ``fc`` (``vllm serve <base> --enable-lora --lora-modules
fc=<adapter>``): see :mod:`labscale.backends.served` for its identity and the parity gate run before it is evaluated.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..cache import ResponseCache
from ..errors import InvalidParameter, LabscaleError, check_range
from .base import Backend, Decoding, Generation, Messages

#: the official endpoint; the only one for which a missing key is an error (local servers take any key)
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
#: sent to servers that need no key (vLLM, transformers serve) when the key variable is unset
PLACEHOLDER_KEY = "EMPTY"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(api_key_env: object) -> str:
    """``api_key_env`` must name an environment variable; the value is never echoed (a key pasted there by
    mistake must not end up in a traceback)."""
    if not isinstance(api_key_env, str) or not _ENV_NAME.match(api_key_env):
        raise InvalidParameter(
            "api_key_env must be the NAME of an environment variable "
            "(letters, digits and underscores, e.g. OPENAI_API_KEY), not the key itself"
        )
    return api_key_env


#: anything that looks like an OpenAI-style secret (also the masked form OpenAI echoes in 401 errors)
_KEY_LIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*.]{4,}")


def normalize_base_url(url: str) -> str:
    """Canonical form of an API base URL (lower-case scheme and host, no default port, no trailing slash).

    URLs with credentials, a query string or a fragment are refused: keys come from the environment only,
    and the base URL is part of every cache key and run record.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameter(f"base_url must be a non-empty URL, got {url!r}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidParameter("base_url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter(
            f"base_url must start with http:// or https:// and name a host, got scheme {scheme or None!r}"
        )
    if parts.username is not None or parts.password is not None:
        # never echo the URL: its user-info part is a credential
        raise InvalidParameter(
            "base_url must not contain credentials (user:password@); "
            "put the key in the environment variable named by api_key_env"
        )
    if parts.query or parts.fragment:
        raise InvalidParameter("base_url must not contain a query string or fragment")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))


def is_official_openai(base_url: str) -> bool:
    return urlsplit(base_url).hostname == "api.openai.com"


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the given secrets and anything key-shaped replaced by ``***``."""
    for secret in secrets:
        if secret and secret != PLACEHOLDER_KEY:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub(lambda m: f"{m.group(1)}-***", text)


#: failure causes that a later attempt may not meet (with 5xx): rerunning resumes past them
_TRANSIENT = {"timeout", "connection", "408", "409", "429"}


def _in_mro(error: BaseException, *names: str) -> bool:
    return any(any(n in cls.__name__ for n in names) for cls in type(error).__mro__)


def failure_cause(error: BaseException | None) -> str:
    """A short cause for a failed attempt or request: ``"timeout"``, ``"connection"``, the HTTP status
    (``"429"``, ``"500"``...), else the exception's type name (``"unknown"`` without one)."""
    if error is None:
        return "unknown"
    if _in_mro(error, "Timeout"):  # openai.APITimeoutError, httpx/httpx2 timeouts, TimeoutError
        return "timeout"
    status = getattr(error, "status_code", None) or getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int):
        return str(status)
    if _in_mro(error, "APIConnectionError", "TransportError", "RequestError", "ConnectionError"):
        return "connection"
    return type(error).__name__


def is_transient(cause: str) -> bool:
    """Whether a failure cause is one a later attempt may not meet (timeouts, connections, 408/409/429, 5xx)."""
    return cause in _TRANSIENT or (cause.isdigit() and cause.startswith("5"))


def _cause_text(cause: str) -> str:
    return f"HTTP {cause}" if cause.isdigit() else {"connection": "connection error"}.get(cause, cause)


def describe_causes(counts: Counter | dict) -> str:
    """``{"timeout": 3, "429": 1}`` -> ``"timeout x3, HTTP 429 x1"`` (most frequent first)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{_cause_text(cause)} x{n}" for cause, n in ordered) or "none"


class _RequestFailed(LabscaleError):
    """A request that failed for good: its final error, that error's cause and the causes of the retries before."""

    def __init__(self, error: BaseException, retries: list[str]):
        super().__init__(type(error).__name__)  # the error's text is shown scrubbed, by _describe, only
        self.error = error
        self.cause = failure_cause(error)
        self.retries = retries


def _retry_recording_client(openai_module: Any, on_retry: Callable[[str], None], **kwargs: Any) -> Any:
    """An ``openai.OpenAI`` client that reports the cause of every retry it makes to ``on_retry``.

    The client retries inside one call and reports only ``retries_taken`` for a success; its retry hook
    ``_sleep_for_retry`` runs inside the ``except`` block of the failed attempt (the response for an HTTP status,
    ``sys.exc_info()`` for a timeout or a dropped connection), so the cause is exact. Where a client version has
    no such hook the plain client is used and retries count as ``"unknown"`` from ``retries_taken``.
    """
    base = openai_module.OpenAI
    if not callable(getattr(base, "_sleep_for_retry", None)):
        return base(**kwargs), False

    class RecordingOpenAI(base):
        def _sleep_for_retry(self, *args: Any, **kw: Any) -> Any:
            response = kw.get("response")
            status = getattr(response, "status_code", None)
            on_retry(str(status) if isinstance(status, int) else failure_cause(sys.exc_info()[1]))
            return super()._sleep_for_retry(*args, **kw)

    return RecordingOpenAI(**kwargs), True


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible API (see the module docstring).

    Parameters
    ----------
    model_id:
        The model name the server expects (``gpt-4-1106-preview``; for ``transformers serve <dir>`` the
        directory exactly as given on its command line; for vLLM the ``--model`` / ``--served-model-name``).
    base_url:
        API root; default ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
    api_key_env:
        Name of the environment variable holding the key (default ``OPENAI_API_KEY``). When it is unset the
        official endpoint raises :class:`~labscale.errors.InvalidParameter` before any request; any other
        server gets the placeholder ``"EMPTY"``.
    concurrency:
        Requests in flight at once. ``batch_size`` (misses per chunk) is four times this.
    max_retries:
        Retries per request on 408/409/429/5xx, timeouts and connection errors (the ``openai`` client's own
        exponential backoff with jitter, honouring ``Retry-After``).
    timeout:
        Seconds per request attempt.
    http_client:
        An ``httpx2.Client`` to send requests through (for fault-injection tests; normally leave it out).
    """

    kind = "openai"

    def __init__(
        self,
        model_id: str,
        *,
        revision: str | None = None,
        cache: ResponseCache | None = None,
        base_url: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        concurrency: int = 4,
        max_retries: int = 6,
        timeout: float = 60.0,
        http_client: Any = None,
        adapter: str | None = None,
        served_base: str | None = None,
        engine: str | None = None,
    ):
        super().__init__(model_id, revision=revision, cache=cache)
        if not isinstance(model_id, str) or not model_id.strip():
            raise InvalidParameter(f"model must be a non-empty string, got {model_id!r}")
        check_range("concurrency", concurrency, 1, 256, integer=True)
        check_range("max_retries", max_retries, 0, 100, integer=True)
        check_range("timeout", timeout, 0.001, 3600)
        check_env_name(api_key_env)
        raw_url = base_url if base_url is not None else (os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL)
        self.base_url = normalize_base_url(raw_url)
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.batch_size = 4 * concurrency
        #: a served LoRA adapter: its local folder (weights hashed into the identity), the served base model's name
        #: for the parity gate, and the engine declared as NAME/VERSION when the server does not report it
        self.adapter = adapter
        self.served_base = served_base
        self._declared_engine = engine
        self._served: dict[str, Any] | None = None
        self.parity: dict[str, Any] | None = None
        if adapter is not None:
            from .served import adapter_weights, check_engine

            self._adapter_weights = adapter_weights(adapter)  # a missing or empty folder fails here, before any request
            if engine is not None:
                check_engine(engine)
        elif served_base is not None or engine is not None:
            raise InvalidParameter("the options served_base and engine describe a served adapter: add adapter=DIR")
        #: retries the client made since the last :meth:`reset_stats`, in all and by cause (``"timeout"``,
        #: ``"connection"``, an HTTP status such as ``"429"``); the runner writes them into the run manifest
        self.retries = 0
        self.retry_causes: Counter = Counter()
        self._retries_lock = threading.Lock()
        self._attempts = threading.local()  # the retry causes of the request this worker thread is sending

        api_key = os.environ.get(api_key_env) or ""
        if not api_key:
            if is_official_openai(self.base_url):
                raise InvalidParameter(
                    f"no API key for {self.base_url}: set the environment variable {api_key_env} "
                    f"(or choose another with the option api_key_env=NAME)"
                )
            api_key = PLACEHOLDER_KEY

        import openai

        # The key lives only inside the openai client (it sends it as the Authorization header); no attribute
        # of this backend holds it, and identity(), cache rows and error messages never include it.
        self._client, self._hooked = _retry_recording_client(
            openai,
            self._on_retry,
            api_key=api_key,
            base_url=self.base_url,
            max_retries=max_retries,
            timeout=self.timeout,
            http_client=http_client,
        )

    @classmethod
    def from_spec(cls, spec, cache: ResponseCache | None = None, *, http_client: Any = None) -> OpenAIBackend:
        options = dict(spec.options)
        return cls(
            spec.model,
            revision=spec.revision,
            cache=cache,
            base_url=options.get("base_url"),
            api_key_env=options.get("api_key_env", DEFAULT_API_KEY_ENV),
            concurrency=options.get("concurrency", 4),
            max_retries=options.get("max_retries", 6),
            timeout=options.get("timeout", 60.0),
            http_client=http_client,
            adapter=spec.adapter,
            served_base=options.get("served_base"),
            engine=options.get("engine"),
        )

    def identity(self) -> dict[str, Any]:
        ident = {"backend": self.kind, "model": self.model_id, "revision": self.revision, "base_url": self.base_url}
        if self.adapter is not None:  # a served adapter: its engine, name and weights (asked of the server once)
            ident["served_adapter"] = self.served_adapter()
        return ident

    def served_adapter(self) -> dict[str, Any]:
        """The served adapter's identity: engine and version, served name, the SHA-256 of its weights."""
        if self._served is None:
            from ..hashing import sha256_file
            from .served import serving_engine

            self._served = {
                **serving_engine(self.base_url, self._declared_engine, timeout=self.timeout),
                "name": self.model_id,
                "weights_sha256": sha256_file(self._adapter_weights),
            }
        return self._served

    def runtime_info(self) -> dict[str, Any]:
        return {"adapter_parity": self.parity} if self.parity is not None else {}

    def _prepare_misses(self, conversations: Sequence[Messages], decoding: Decoding) -> None:
        """Before a served adapter's first request: the parity gate (:func:`labscale.backends.served.check_parity`)."""
        if self.adapter is not None and self.parity is None:
            from .served import check_parity

            self.parity = check_parity(self).as_dict()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model_id!r}, base_url={self.base_url!r})"

    # -- retries ------------------------------------------------------------------------------------------
    def _on_retry(self, cause: str) -> None:
        with self._retries_lock:
            self.retries += 1
            self.retry_causes[cause] += 1
        history = getattr(self._attempts, "causes", None)
        if history is not None:
            history.append(cause)

    def reset_stats(self) -> None:
        super().reset_stats()
        with self._retries_lock:
            self.retries = 0
            self.retry_causes = Counter()

    def retry_record(self) -> dict[str, Any]:
        """Retries since the last :meth:`reset_stats`: ``{"total": 4, "by_cause": {"429": 1, "timeout": 3}}``."""
        with self._retries_lock:
            return {"total": self.retries, "by_cause": dict(sorted(self.retry_causes.items()))}

    # -- one request --------------------------------------------------------------------------------------
    def complete(self, messages: Messages, decoding: Decoding, *, model: str | None = None) -> str:
        """One reply straight from the server (no cache): ``model`` overrides the model name (the parity gate asks
        the served base model this way)."""
        try:
            return self._request(messages, decoding, model=model).text
        except _RequestFailed as failed:
            raise RuntimeError(self._failure_message([failed], total=1, sent=1, stored=0)) from None

    def _request(self, messages: Messages, decoding: Decoding, *, model: str | None = None) -> Generation:
        """One chat completion; a failure (after the client's retries) raises :class:`_RequestFailed`."""
        self._attempts.causes = causes = []
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=model or self.model_id,
                messages=[dict(m) for m in messages],
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                max_tokens=decoding.max_new_tokens,
                seed=decoding.seed,
                n=1,
            )
        except Exception as error:  # noqa: BLE001 - every failure is reported with its cause
            raise _RequestFailed(error, list(causes)) from None
        finally:
            self._attempts.causes = None
        if raw.retries_taken and not self._hooked:
            for _ in range(raw.retries_taken):
                self._on_retry("unknown")
        response = raw.parse()
        if not response.choices:
            raise RuntimeError(f"{self.base_url} returned no choices for model {self.model_id!r}")
        choice = response.choices[0]
        usage = response.usage
        return Generation(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            extra={
                "finish_reason": choice.finish_reason,
                "system_fingerprint": getattr(response, "system_fingerprint", None),
                "response_model": response.model,
            },
        )

    def _describe(self, error: BaseException) -> str:
        status = getattr(error, "status_code", None)
        text = f"{type(error).__name__}" + (f" (HTTP {status})" if status else "") + f": {error}"
        return scrub(text, [self._client.api_key])[:500]

    # -- a batch of cache misses ---------------------------------------------------------------------------
    def _generate_batch(
        self, conversations: Sequence[Messages], decoding: Decoding, store: Callable[[int, Generation], None]
    ) -> None:
        """Send up to ``concurrency`` requests at once; store each reply from this thread as it completes.

        After the first request that fails for good (retries exhausted, or an error not worth retrying such as
        401/404) no further request is sent; those in flight finish and are stored, and a :class:`RuntimeError`
        reports how much of the batch was stored.
        """
        total = len(conversations)
        if total == 0:
            return
        todo = iter(enumerate(conversations))
        failures: list[BaseException] = []
        stored = sent = 0
        # Submitting from this thread (at most `concurrency` in flight) rather than queueing the whole batch
        # means that after a failure nothing new is sent: the pool's workers cannot pick up queued items.
        executor = ThreadPoolExecutor(max_workers=min(self.concurrency, total), thread_name_prefix="labscale-openai")
        try:
            in_flight: dict[Future, int] = {}

            def submit_next() -> None:
                nonlocal sent
                item = next(todo, None)
                if item is not None:
                    in_flight[executor.submit(self._request, item[1], decoding)] = item[0]
                    sent += 1

            for _ in range(self.concurrency):
                submit_next()
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=in_flight.__getitem__):
                    j = in_flight.pop(future)
                    error = future.exception()
                    if error is not None:
                        failures.append(error)
                        continue
                    store(j, future.result())
                    stored += 1
                    if not failures:
                        submit_next()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        if failures:
            raise RuntimeError(self._failure_message(failures, total=total, sent=sent, stored=stored)) from None

    def _failure_message(self, failures: list[BaseException], *, total: int, sent: int, stored: int) -> str:
        """Name every cause of the failed requests (and of their retries) and the fix for the main one; only
        transient causes promise that a rerun resumes."""
        failed = [f if isinstance(f, _RequestFailed) else _RequestFailed(f, []) for f in failures]
        causes = Counter(f.cause for f in failed)
        retried = Counter(c for f in failed for c in f.retries)
        # the cause to explain: the most frequent one that a rerun cannot get past, else the most frequent one
        permanent = [c for c in causes if not is_transient(c)]
        main = max(permanent or list(causes), key=lambda c: (causes[c], -list(causes).index(c)))
        example = next(f for f in failed if f.cause == main)
        not_sent = total - sent
        kept = f"{stored} of the batch's {total} items were stored in the response cache" + (
            f" ({not_sent} not sent)" if not_sent else ""
        )
        text = (
            f"{len(failed)} of {total} requests to {self.base_url} (model {self.model_id!r}) failed: "
            f"{describe_causes(causes)}"
            + (
                f", after {sum(retried.values())} retries ({describe_causes(retried)})"
                if retried
                else ", with no retry"
            )
            + f"; e.g. {self._describe(example.error).rstrip('.')}. {kept}. "
        )
        if not permanent:
            hints = []
            if "timeout" in causes or "timeout" in retried:
                hints.append(
                    f"a request took longer than the timeout of {self.timeout:g} s: a slow server or long "
                    "replies need a larger one (model option timeout=SECONDS)"
                )
            if "429" in causes or "429" in retried:
                hints.append(
                    f"the server rate-limited the requests: lower concurrency (now {self.concurrency}) or "
                    f"raise max_retries (now {self.max_retries})"
                )
            if any(c == "connection" or c.startswith("5") for c in causes):
                hints.append(f"the server at {self.base_url} failed or could not be reached: check that it is up")
            return (
                text
                + "These failures are transient"
                + (": " + "; ".join(hints) if hints else "")
                + ". Rerunning resumes from the cache."
            )
        return (
            text + self._fix_for(main) + " Not transient: a rerun fails the same way until this is fixed; "
            "then it reuses the stored items."
        )

    def _fix_for(self, cause: str) -> str:
        if cause == "401":
            return (
                f"The server refused the API key (HTTP 401): put a valid key in the environment variable "
                f"{self.api_key_env} (or name another one with the model option api_key_env=NAME)."
            )
        if cause == "403":
            return (
                f"The key has no permission for model {self.model_id!r} at {self.base_url} (HTTP 403): use a "
                "key of a project or organisation with access, or another model."
            )
        if cause == "404":
            return (
                f"The server knows no model {self.model_id!r} (HTTP 404): check the model id and base_url "
                f"({self.base_url})."
            )
        if cause in ("400", "422"):
            return (
                f"The server rejected the request (HTTP {cause}): check that model {self.model_id!r} accepts "
                "these messages and decoding parameters."
            )
        return f"The cause ({_cause_text(cause)}) is not a known transient failure: fix it before rerunning."

    def close(self) -> None:
        self._client.close()


__all__ = [
    "OpenAIBackend",
    "describe_causes",
    "failure_cause",
    "is_transient",
    "normalize_base_url",
    "scrub",
    "OPENAI_BASE_URL",
    "PLACEHOLDER_KEY",
]
