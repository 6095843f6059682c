"""The backend contract and the cache-aware generation loop every backend shares.

A backend turns lists of chat messages into :class:`Generation` objects. Subclasses implement
:meth:`Backend._generate_batch`; :meth:`Backend.generate` looks every request up in the response cache first,
sends only the misses, stores each result the moment it arrives and keeps per-run statistics
(calls, cache hits, tokens, wall time).
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import progress as progress_bars
from ..cache import ResponseCache, request_key
from ..errors import check_range

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Decoding:
    """Every decoding setting, always explicit (never inherited from a hub ``generation_config``).

    ``temperature == 0`` means greedy decoding.
    """

    max_new_tokens: int = 10
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("max_new_tokens", self.max_new_tokens, 1, 8192, integer=True)
        check_range("temperature", self.temperature, 0.0, 2.0)
        check_range("top_p", self.top_p, 0.0, 1.0)
        check_range("seed", self.seed, 0, 2**32 - 1, integer=True)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cache_dict(self) -> dict[str, Any]:
        """The settings that can change an output, for cache keys: under greedy decoding the sampling-only ones
        (``top_p``, ``seed``) cannot, so they take their defaults -- a greedy request with another seed or top_p
        is the same request. Sampled requests keep every setting."""
        if not self.greedy:
            return self.as_dict()
        return asdict(Decoding(max_new_tokens=self.max_new_tokens))


@dataclass
class Generation:
    """One model reply with its token usage; ``cached`` tells whether it came from the response cache."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class UsageStats:
    """Counters for one backend over its lifetime (reset with :meth:`Backend.reset_stats`)."""

    requests: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generation_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """A model behind one interface: Hugging Face transformers, or an OpenAI-compatible API."""

    kind: str = ""
    #: how many misses are sent per :meth:`_generate_batch` call
    batch_size: int = 8

    def __init__(self, model_id: str, *, revision: str | None = None, cache: ResponseCache | None = None):
        self.model_id = model_id
        self.revision = revision
        self.cache = cache
        self.stats = UsageStats()

    # -- identity ---------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything about the model that changes its outputs; part of every cache key and run record."""
        return {"backend": self.kind, "model": self.model_id, "revision": self.revision}

    def request_document(self, messages: Messages, decoding: Decoding, sample_index: int) -> dict[str, Any]:
        """What a cached reply is stored under. ``decoding`` enters normalised (:meth:`Decoding.cache_dict`), so
        greedy requests differing only in seed or top_p share one entry; ``sample_index`` always enters, so
        repeated draws stay distinct entries when asked for."""
        return {
            **self.identity(),
            "messages": [dict(m) for m in messages],
            "decoding": decoding.cache_dict(),
            "sample_index": sample_index,
        }

    def reset_stats(self) -> None:
        self.stats = UsageStats()

    def retry_record(self) -> dict[str, Any] | None:
        """Retries since :meth:`reset_stats`, in all and by cause, for backends that retry (None otherwise)."""
        return None

    def runtime_info(self) -> dict[str, Any]:
        """Hardware and load settings for the run manifest (device, dtype, quantization); none by default."""
        return {}

    # -- generation -------------------------------------------------------------------------------------
    def generate(
        self,
        conversations: Sequence[Messages],
        decoding: Decoding,
        *,
        sample_index: int = 0,
        desc: str | None = None,
        progress: bool = True,
    ) -> list[Generation]:
        """Replies for ``conversations`` in order, from the cache where possible."""
        documents = [self.request_document(c, decoding, sample_index) for c in conversations]
        keys = [request_key(d) for d in documents]
        results: list[Generation | None] = [None] * len(conversations)
        misses: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is None:
                misses.append(i)
            else:
                results[i] = Generation(hit.text, hit.prompt_tokens, hit.completion_tokens, True, hit.extra)
        # Similar lengths batch together, so little compute goes to padding; results keep the input order.
        misses.sort(key=lambda i: sum(len(m["content"]) for m in conversations[i]))
        self.stats.requests += len(conversations)
        self.stats.cache_hits += len(conversations) - len(misses)

        start = time.perf_counter()
        batches: list[slice] = []
        if misses:
            pending = [conversations[i] for i in misses]
            self._prepare_misses(pending, decoding)
            batches = self._batches(pending, decoding)
        # items done of this call (cache hits count as done from the start), the hits, and tqdm's rate and ETA
        hits = len(conversations) - len(misses)
        with (
            progress_bars.bar(
                total=len(conversations),
                initial=hits,
                postfix={"hits": hits},
                desc=desc or f"{self.model_id}",
                unit="item",
                disable=not progress or not conversations,
                leave=False,
            ) as bar,
            self._generating() if batches else contextlib.nullcontext(),
        ):
            for part in batches:
                chunk = misses[part]

                def store(j: int, generation: Generation, chunk: list[int] = chunk) -> None:
                    i = chunk[j]
                    results[i] = generation
                    self.stats.model_calls += 1
                    self.stats.prompt_tokens += generation.prompt_tokens or 0
                    self.stats.completion_tokens += generation.completion_tokens or 0
                    if self.cache is not None:
                        self.cache.put(
                            keys[i],
                            documents[i],
                            generation.text,
                            prompt_tokens=generation.prompt_tokens,
                            completion_tokens=generation.completion_tokens,
                            extra=generation.extra,
                        )
                    bar.update(1)

                self._generate_batch([conversations[i] for i in chunk], decoding, store)
        self.stats.generation_seconds += time.perf_counter() - start
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # a backend must report every item or raise
            raise RuntimeError(f"backend {self.kind} returned no result for items {missing[:5]}")
        return results  # type: ignore[return-value]

    def _prepare_misses(self, conversations: Sequence[Messages], decoding: Decoding) -> None:  # noqa: B027
        """Called once per :meth:`generate` call with all its cache misses, before their batches: a backend may
        prepare what the batches share (the HF backend finds the prompts' common prefix here). None by default."""

    def _generating(self) -> contextlib.AbstractContextManager[Any]:
        """Entered around a :meth:`generate` call's batches when it has misses: a backend may prepare its model for
        the call and restore it after (the HF backend reorders bf16 weights for oneDNN here). Nothing by default."""
        return contextlib.nullcontext()

    def _batches(self, conversations: Sequence[Messages], decoding: Decoding) -> list[slice]:
        """How a call's misses (shortest first) are split into :meth:`_generate_batch` calls: :attr:`batch_size` at a
        time by default."""
        n = len(conversations)
        return [slice(start, min(start + self.batch_size, n)) for start in range(0, n, self.batch_size)]

    @abstractmethod
    def _generate_batch(
        self, conversations: Sequence[Messages], decoding: Decoding, store: Callable[[int, Generation], None]
    ) -> None:
        """Generate replies for a batch of cache misses, calling ``store(j, generation)`` for each as it is ready.

        Implementations must call ``store`` for every item or raise; results stored before an exception stay
        in the cache, so a rerun resumes where the failure happened.
        """

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing to release
        """Release models or connections (optional)."""
