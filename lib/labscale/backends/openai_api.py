"""Any OpenAI-compatible chat API — OpenAI itself, a vLLM server, ``transformers serve`` — through one code path.

The official ``openai`` client does the HTTP work: it retries 408/409/429/5xx responses, timeouts and dropped
connections with exponential backoff and jitter (0.5 s doubling to 8 s, honouring ``Retry-After`` up to two
minutes), so this module has no retry loop of its own. It adds what a study needs on top:

* every decoding parameter sent explicitly (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``n=1``);
* token usage, ``finish_reason``, ``system_fingerprint`` and the model name the server reports, per reply;
* bounded concurrency (a thread pool of ``concurrency`` workers), with each reply stored in the response cache
  the moment it arrives, so a run that fails or is interrupted resumes from the cache;
* the API key read from an environment variable only, and kept out of identities, cache rows, error messages
  and logs.

Model strings::

    openai:gpt-4-1106-preview                                   # key from OPENAI_API_KEY
    openai:gpt-3.5-turbo-0613?concurrency=8&max_retries=8
    openai:/models/SmolLM2-135M-Instruct?base_url=http://127.0.0.1:8000/v1   # transformers serve / vLLM
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..cache import ResponseCache
from ..errors import InvalidParameter, check_range
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
        raise InvalidParameter("api_key_env must be the NAME of an environment variable "
                               "(letters, digits and underscores, e.g. OPENAI_API_KEY), not the key itself")
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
            f"base_url must start with http:// or https:// and name a host, got scheme {scheme or None!r}")
    if parts.username is not None or parts.password is not None:
        # never echo the URL: its user-info part is a credential
        raise InvalidParameter("base_url must not contain credentials (user:password@); "
                               "put the key in the environment variable named by api_key_env")
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

    def __init__(self, model_id: str, *, revision: str | None = None, cache: ResponseCache | None = None,
                 base_url: str | None = None, api_key_env: str = DEFAULT_API_KEY_ENV, concurrency: int = 4,
                 max_retries: int = 6, timeout: float = 60.0, http_client: Any = None):
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
        #: retries the client needed for requests that eventually succeeded (from ``retries_taken``)
        self.retries = 0
        self._retries_lock = threading.Lock()

        api_key = os.environ.get(api_key_env) or ""
        if not api_key:
            if is_official_openai(self.base_url):
                raise InvalidParameter(
                    f"no API key for {self.base_url}: set the environment variable {api_key_env} "
                    f"(or choose another with the option api_key_env=NAME)")
            api_key = PLACEHOLDER_KEY

        import openai

        # The key lives only inside the openai client (it sends it as the Authorization header); no attribute
        # of this backend holds it, and identity(), cache rows and error messages never include it.
        self._client = openai.OpenAI(api_key=api_key, base_url=self.base_url, max_retries=max_retries,
                                     timeout=self.timeout, http_client=http_client)

    @classmethod
    def from_spec(cls, spec, cache: ResponseCache | None = None, *, http_client: Any = None) -> "OpenAIBackend":
        options = dict(spec.options)
        return cls(spec.model, revision=spec.revision, cache=cache,
                   base_url=options.get("base_url"),
                   api_key_env=options.get("api_key_env", DEFAULT_API_KEY_ENV),
                   concurrency=options.get("concurrency", 4),
                   max_retries=options.get("max_retries", 6),
                   timeout=options.get("timeout", 60.0),
                   http_client=http_client)

    def identity(self) -> dict[str, Any]:
        return {"backend": self.kind, "model": self.model_id, "revision": self.revision, "base_url": self.base_url}

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model_id!r}, base_url={self.base_url!r})"

    # -- one request --------------------------------------------------------------------------------------
    def _request(self, messages: Messages, decoding: Decoding) -> Generation:
        raw = self._client.chat.completions.with_raw_response.create(
            model=self.model_id,
            messages=[dict(m) for m in messages],
            temperature=decoding.temperature,
            top_p=decoding.top_p,
            max_tokens=decoding.max_new_tokens,
            seed=decoding.seed,
            n=1,
        )
        if raw.retries_taken:
            with self._retries_lock:
                self.retries += raw.retries_taken
        response = raw.parse()
        if not response.choices:
            raise RuntimeError(f"{self.base_url} returned no choices for model {self.model_id!r}")
        choice = response.choices[0]
        usage = response.usage
        return Generation(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            extra={"finish_reason": choice.finish_reason,
                   "system_fingerprint": getattr(response, "system_fingerprint", None),
                   "response_model": response.model},
        )

    def _describe(self, error: BaseException) -> str:
        status = getattr(error, "status_code", None)
        text = f"{type(error).__name__}" + (f" (HTTP {status})" if status else "") + f": {error}"
        return scrub(text, [self._client.api_key])[:500]

    # -- a batch of cache misses ---------------------------------------------------------------------------
    def _generate_batch(self, conversations: Sequence[Messages], decoding: Decoding,
                        store: Callable[[int, Generation], None]) -> None:
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
        executor = ThreadPoolExecutor(max_workers=min(self.concurrency, total),
                                      thread_name_prefix="labscale-openai")
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
            not_sent = total - sent
            raise RuntimeError(
                f"{len(failures)} of {total} requests to {self.base_url} (model {self.model_id!r}) failed "
                f"after up to {self.max_retries} retries; first error: {self._describe(failures[0])}. "
                f"{stored} of the batch's {total} items were stored in the response cache"
                + (f" ({not_sent} not sent)" if not_sent else "")
                + "; rerunning resumes from the cache.") from None

    def close(self) -> None:
        self._client.close()


__all__ = ["OpenAIBackend", "normalize_base_url", "scrub", "OPENAI_BASE_URL", "PLACEHOLDER_KEY"]
