"""Local Hugging Face causal LMs through transformers: batched generation with left padding.

* Prompts go through the tokenizer's chat template (``apply_chat_template``); a model without one (the study's
  Falcon-7B-Instruct) gets the documented ``User:/Assistant:`` fallback of :func:`labscale.prompts.render_plain`.
* Decoding settings are always explicit: a fresh ``GenerationConfig`` is built from :class:`Decoding`, so a hub
  ``generation_config.json`` (for example Llama-2-chat's later ``do_sample=true, temperature=0.6``) can never
  switch greedy decoding to sampling behind our back. Stop tokens are the tokenizer's EOS plus the model's
  declared EOS ids, recorded in the run manifest. Greedy decoding runs :func:`~labscale.backends.greedy.greedy_decode`,
  the same steps as ``generate`` with each reply leaving the batch when it stops; sampling runs ``generate``.
* CUDA when present, else CPU; optional 4-bit NF4 loading through bitsandbytes; optional LoRA adapter (peft).
* Weights load lazily, on the first cache miss, so a fully cached rerun never loads the model.
* On a CPU, bf16 linear layers run on weights reordered for oneDNN for the length of each generate call with misses
  (``packed_weights=auto``): the same bits as plain ``F.linear``, faster (:mod:`labscale.backends.packed`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, check_choice, check_range
from ..hashing import sha256_files
from ..prompts import render_plain, render_prompt
from .base import Backend, Decoding, Generation, Messages
from .greedy import greedy_decode

log = logging.getLogger(__name__)


#: adapter_config.json fields that name where the base model was read from, not what the adapter computes: the
#: Trainer's checkpoints name a local folder, the saved adapter the hub id (and the identity names the base anyway)
_ADAPTER_CONFIG_LOCATIONS = ("base_model_name_or_path", "revision")


def _adapter_fingerprint(adapter: str) -> str:
    """A content hash for a local adapter folder (its weights and its config, less where the base model was read
    from); the id itself for hub adapters. A fine-tune's last checkpoint and its saved adapter hold the same weights
    and so share a fingerprint, and their generations a cache."""
    path = Path(adapter)
    if not path.is_dir():
        return adapter
    digest = hashlib.sha256()
    config = path / "adapter_config.json"
    if config.is_file():
        settings = json.loads(config.read_text(encoding="utf-8"))
        kept = {k: v for k, v in settings.items() if k not in _ADAPTER_CONFIG_LOCATIONS}
        digest.update(json.dumps(kept, sort_keys=True).encode())
    weights = [path / n for n in ("adapter_model.safetensors", "adapter_model.bin")]
    digest.update(sha256_files(f for f in weights if f.is_file()).encode())
    return f"sha256:{digest.hexdigest()[:16]}"


_TRUE = ("1", "true", "yes", "on")
#: weight files of which a cached model needs at least one (with its config.json)
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: seconds the availability check waits for the hub when online
HUB_TIMEOUT = 10.0
#: shared-prefix reuse: a prompt prefix that every prompt of a call shares is run once and its KV cache reused when it
#: is at least this many tokens. Zero-shot prompts share their system message and instruction (about 55 tokens on the
#: embedded model): reusing those took 100 entity-resolution prompts from 28.2-29.5 s to 19.8-20.7 s and 60
#: summarization prompts from 48.9-49.4 s to 43.6-45.3 s (bf16, 1 thread), where 64 had left them whole.
PREFIX_MIN_TOKENS = 16
#: prefix KV caches a backend keeps, least recently used dropped first (one per task and shot count in use)
PREFIX_CACHE_ENTRIES = 4


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """The length of the longest prefix that all ``sequences`` share (0 when there are none)."""
    if not sequences:
        return 0
    first, n = sequences[0], min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences):
            return i
    return n


def generated_length(tokens: Sequence[int], stops: set[int]) -> int:
    """How many of a reply's ``tokens`` were really generated: up to and including the first stop token (padding
    after it does not count), all of them when none stopped it."""
    for pos, token in enumerate(tokens):
        if token in stops:
            return pos + 1
    return len(tokens)


def chosen_logprobs(scores, tokens):
    """The log-probability of each generated token, ``(batch, steps)``: each step's scores (the logits after the
    sampling processors, as ``generate`` returns them, or a forward pass's logits split per position, as scoring
    passes them) normalised with ``logsumexp``, at the chosen token. The same
    values as ``compute_transition_scores(..., normalize_logits=True)`` without stacking every step's
    ``(batch, vocabulary)`` scores into one tensor first (about 1 s per batch of 24 replies of 64 tokens)."""
    import torch

    return torch.stack(
        [step.gather(1, tokens[:, t : t + 1]).squeeze(1) - step.logsumexp(-1) for t, step in enumerate(scores)], dim=1
    )


def cache_argument(model) -> str:
    """The name under which ``generate`` and a forward pass of ``model`` take a KV cache, and a forward pass returns
    it: ``cache`` in transformers 5, else ``past_key_values``."""
    import inspect

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps it
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def _contiguous_head_input(model) -> None:
    """Make the output head's input contiguous before it runs.

    ``generate`` prefills with ``logits_to_keep=1``, so the head gets ``hidden[:, -1:, :]``, a strided view. When the
    head's weight does not require grad (a merged LoRA adapter: peft froze it), ``torch.matmul`` does not fold such a
    view into one matrix product but broadcasts the weight to every row of the batch and calls ``bmm``: a copy of
    (batch x vocabulary x hidden) values. A prefill of 32 entity-resolution prompts on the embedded model took 14.3 s
    merged against 7.4 s for the base model (whose weights require grad, which makes ``matmul`` fold); with the
    contiguous input, 6.8-6.9 s and the same logits (bit for bit there in bf16; mm and bmm round apart in fp32)."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))


def hub_offline() -> bool:
    """Whether Hugging Face offline mode is on (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` now, or at import)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _cached(model_id: str, revision: str | None) -> bool:
    """Whether the local hub cache holds ``config.json`` and a weights file of ``model_id`` at ``revision``."""
    from huggingface_hub import try_to_load_from_cache

    def has(name: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(model_id, name, revision=revision), str)
        except ValueError:  # not a valid repo id
            return False

    return has("config.json") and any(has(name) for name in _WEIGHT_FILES)


def check_model_available(model_id: str, revision: str | None = None, *, text: str | None = None) -> str:
    """Resolve where ``model_id`` (a local folder or a hub id) will load from, without loading it: ``"folder"``,
    ``"cache"`` or ``"hub"``. Raises :class:`InvalidParameter` naming the model, what was tried and how to fix
    it, so an unavailable model fails at planning time instead of with a raw ``OSError`` (after the hub client's
    retries) when its weights are first needed.

    A folder needs a ``config.json``. A hub id is found in the local Hugging Face cache
    (``try_to_load_from_cache``: ``config.json`` and a weights file); failing that, with offline mode on, it is
    unavailable; online, ``model_info`` (``HUB_TIMEOUT`` seconds) must find it and ``auth_check`` must grant
    access to a gated one.
    """
    from huggingface_hub import constants

    name = text or f"hf:{model_id}"
    pinned = f" at revision {revision!r}" if revision else ""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise InvalidParameter(
                f"model {name!r}: the folder {folder} has no config.json, so it is not a "
                "Hugging Face model folder (save one with save_pretrained, or merge_adapter)"
            )
        return "folder"
    if _cached(model_id, revision):
        return "cache"
    fixes = (
        f"download it once with network access (`hf download {model_id}`"
        + (f" --revision {revision}" if revision else "")
        + ", or run with HF_HUB_OFFLINE unset), point HF_HOME (or HF_HUB_CACHE) at a cache that holds it "
        "before starting Python, give a local model folder as hf:<path>, or use the embedded model "
        "'smollm2-135m' (no download)"
    )
    tried = f"not a local folder, and not in the Hugging Face cache {constants.HF_HUB_CACHE}"
    if hub_offline():
        raise InvalidParameter(
            f"model {name!r}{pinned} is unavailable: {tried}, and HF_HUB_OFFLINE=1 forbids "
            f"downloading it. To fix: {fixes}."
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi()
    try:
        info = api.model_info(model_id, revision=revision, timeout=HUB_TIMEOUT)
        if getattr(info, "gated", False):
            api.auth_check(model_id)
    except GatedRepoError:
        raise InvalidParameter(
            f"model {name!r} is gated on the Hugging Face hub and this machine has no access: accept its licence "
            f"at https://huggingface.co/{model_id} and log in (`hf auth login`, or set HF_TOKEN); or use the "
            "embedded model 'smollm2-135m'"
        ) from None
    except RevisionNotFoundError:
        raise InvalidParameter(
            f"model {name!r}: the hub has no revision {revision!r} of {model_id!r}; give a "
            "commit hash, branch or tag that exists"
        ) from None
    except RepositoryNotFoundError:
        raise InvalidParameter(
            f"model {name!r}: no model {model_id!r} on the Hugging Face hub (nor a local folder of that name); check "
            "the id (a private model also needs `hf auth login` or HF_TOKEN), or use the embedded model "
            "'smollm2-135m'"
        ) from None
    except Exception as exc:  # noqa: BLE001 - no network, DNS, proxy, timeout, hub outage: unavailable
        raise InvalidParameter(
            f"model {name!r}{pinned} is unavailable: {tried}, and the hub could not be reached within "
            f"{HUB_TIMEOUT:.0f} s ({type(exc).__name__}: {str(exc)[:200]}). To fix: {fixes}; offline, set "
            "HF_HUB_OFFLINE=1 so that nothing waits for the network."
        ) from None
    return "hub"


def _quantize_int8_dynamic(model):
    """``model`` with every ``nn.Linear`` replaced by torch's dynamically quantized int8 linear (CPU, fp32 in/out);
    the tied input embedding stays fp32, the output projection (``lm_head``) is quantized like the rest."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; the API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class HFBackend(Backend):
    """A transformers causal LM; see the module docstring for the guarantees."""

    kind = "hf"

    def __init__(
        self,
        model_id: str,
        *,
        revision: str | None = None,
        cache=None,
        load_in_4bit: bool = False,
        load_in_8bit: bool = False,
        dtype: str = "auto",
        quantize: str = "none",
        device: str = "auto",
        adapter: str | None = None,
        merge_adapter: bool = True,
        batch_size: int = 32,
        batch_tokens: int = 8192,
        prefix_cache: str = "auto",
        packed_weights: str = "auto",
        chat_template: str = "auto",
        embedded: bool = False,
    ):
        super().__init__(model_id, revision=revision, cache=cache)
        if load_in_4bit and load_in_8bit:
            raise InvalidParameter(
                f"model {model_id!r} asks for both load_in_4bit and load_in_8bit; choose one quantization"
            )
        self.load_in_4bit, self.load_in_8bit = load_in_4bit, load_in_8bit
        self.dtype_name = dtype
        self.device_name = device
        self.quantize = quantize
        self._check_precision(model_id, adapter)  # before anything loads, naming the valid choices
        self.adapter = adapter
        self.adapter_fingerprint = _adapter_fingerprint(adapter) if adapter else None
        # peft's merge_and_unload needs full-precision weights; a 4/8-bit base keeps its LoRA pass
        self.merge_adapter = bool(adapter) and merge_adapter and not (load_in_4bit or load_in_8bit)
        check_range("batch_size", batch_size, 1, None, integer=True)
        check_range("batch_tokens", batch_tokens, 1, None, integer=True)
        self.batch_size, self.batch_tokens = batch_size, batch_tokens
        self._miss_lengths: list[int] = []
        check_choice("prefix_cache", prefix_cache, ("auto", "off"))
        self.prefix_cache = prefix_cache  # outside identity(): reuse decodes as the full prompt does (fp32 exactly)
        self._prefix_kv: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._call_prefix: tuple[tuple[int, ...], int] | None = None
        self.prefix_stats = self._zero_prefix_stats()
        check_choice("packed_weights", packed_weights, ("auto", "off"))
        self.packed_weights = packed_weights  # outside identity(): the same bits as F.linear (labscale.backends.packed)
        self.packed_layers = 0  # how many linear layers the last generate call with misses ran on reordered weights
        self.chat_template = chat_template
        self.embedded = embedded  # the model is the embedded SmolLM2, converted on first load
        self._model = None
        self._tokenizer = None

    def _check_precision(self, model_id: str, adapter: str | None) -> None:
        """Validate ``dtype`` and ``quantize`` and their combinations, before any weights load: an unknown value
        or a combination that cannot run fails here with :class:`InvalidParameter` naming the valid choices."""
        from .precision import DTYPES, QUANTIZE

        check_choice("value for option 'dtype'", self.dtype_name, DTYPES)
        check_choice("value for option 'quantize'", self.quantize, QUANTIZE)
        if self.quantize == "none":
            return
        clash = [
            name
            for name, on in (
                ("load_in_4bit", self.load_in_4bit),
                ("load_in_8bit", self.load_in_8bit),
                (f"dtype={self.dtype_name}", self.dtype_name not in ("auto", "float32")),
                ("adapter", bool(adapter)),
            )
            if on
        ]
        if clash:
            raise InvalidParameter(
                f"model {model_id!r}: quantize={self.quantize} quantizes fp32 CPU weights itself and cannot be "
                f"combined with {', '.join(clash)}; valid with it: dtype 'auto' or 'float32', no load_in_4bit/"
                "load_in_8bit, no adapter (merge it into a model folder first with labscale.finetune.merge_adapter), "
                "device 'cpu' or 'auto' without CUDA. Or drop quantize (valid choices: "
                + ", ".join(repr(q) for q in QUANTIZE)
                + ")"
            )
        if self.device_name == "cuda" or (self.device_name == "auto" and self.device == "cuda"):
            raise InvalidParameter(
                f"model {model_id!r}: quantize={self.quantize} runs on CPU only (torch dynamic quantization), and "
                "this model would load on CUDA; add device=cpu, or use load_in_4bit/load_in_8bit on the GPU"
            )

    @classmethod
    def from_spec(cls, spec, *, cache=None, check_available: bool = True) -> HFBackend:
        """The backend of a parsed model spec; unless ``check_available`` is False (file-only checks, such as an
        adapter's base model), a model that cannot be loaded fails here (:func:`check_model_available`)."""
        from . import EMBEDDED_MODEL, embedded

        options = {**spec.options, **({"adapter": spec.adapter} if spec.adapter else {})}
        if spec.model == EMBEDDED_MODEL:
            if spec.revision:
                raise InvalidParameter(
                    f"the embedded model has one revision (the wheel's GGUF); remove "
                    f"'@{spec.revision}' from {spec.text!r}"
                )
            embedded.gguf_path()  # fail now, with install advice, if the wheel is missing
            return cls(embedded.UPSTREAM_ID, revision=embedded.revision(), cache=cache, embedded=True, **options)
        if check_available:
            check_model_available(spec.model, spec.revision, text=spec.text)  # fail now, naming the fix
        return cls(spec.model, revision=spec.revision, cache=cache, **options)

    # -- identity ---------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        # the resolved dtype and device: a cache filled in fp32 on CPU is not reused for bf16 on CUDA
        ident.update(
            {
                "load_in_4bit": self.load_in_4bit,
                "dtype": str(self._torch_dtype()).replace("torch.", ""),
                "device": self.device,
                "chat_template": self.chat_template,
            }
        )
        if self.load_in_8bit:  # only when on, so identities (and cache keys) of other loads stay as they were
            ident["load_in_8bit"] = True
        if self.quantize != "none":  # int8 weights answer differently from the fp32 ones: a separate cache
            ident["quantize"] = self.quantize
        if self.adapter:
            ident["adapter"] = {"id": str(self.adapter), "fingerprint": self.adapter_fingerprint}
            if self.merge_adapter:  # W + BA rounded to the weights' dtype: not bit-equal to the separate LoRA pass
                ident["adapter"]["merged"] = True
        return ident

    def request_document(self, messages: Messages, decoding: Decoding, sample_index: int) -> dict[str, Any]:
        """As for every backend, less a local adapter's folder: its content fingerprint keys the cache, so a moved
        adapter, or a fine-tune's last checkpoint and its saved adapter, share their generations (the run record's
        identity still names the folder)."""
        document = super().request_document(messages, decoding, sample_index)
        if self.adapter and self.adapter_fingerprint != str(self.adapter):
            document["adapter"] = {k: v for k, v in document["adapter"].items() if k != "id"}
        return document

    # -- loading ----------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        import torch

        if self.device_name == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device_name == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device=cuda was requested but torch sees no CUDA device")
        return self.device_name

    def _torch_dtype(self):
        import torch

        if self.dtype_name in ("auto", "auto-bf16"):
            if self.device == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.dtype_name == "auto-bf16":  # bf16 only where the CPU computes it natively (else it is slower)
                from .precision import cpu_supports_bf16

                return torch.bfloat16 if cpu_supports_bf16() else torch.float32
            return torch.float32
        return getattr(torch, self.dtype_name)

    def _source(self) -> str:
        if self.embedded:
            from . import embedded

            return str(embedded.ensure_converted())
        return self.model_id

    def load(self) -> None:
        """Load tokenizer and weights (idempotent)."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        source = self._source()
        revision = None if self.embedded else self.revision
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        tokenizer.padding_side = "left"  # decoder-only batching: pad on the left so replies start together
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        kwargs: dict[str, Any] = {"revision": revision, "dtype": self._torch_dtype()}
        if self.load_in_4bit:
            compute = torch.bfloat16 if self.device == "cuda" else torch.float32
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
            kwargs["device_map"] = {"": 0} if self.device == "cuda" else {"": "cpu"}
        if self.load_in_8bit:
            if self.device != "cuda":
                raise InvalidParameter(
                    f"load_in_8bit needs a CUDA GPU (bitsandbytes LLM.int8), and {self.model_id!r} would load on "
                    f"{self.device!r}; drop load_in_8bit (or use load_in_4bit) on this machine"
                )
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["device_map"] = {"": 0}
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        if not (self.load_in_4bit or self.load_in_8bit):
            model.to(self.device)
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
            if self.merge_adapter:  # one matmul per projection instead of three (100 prompts: 18.4 -> 15.1 s)
                model = model.merge_and_unload()
        model.eval()
        _contiguous_head_input(model)
        if self.quantize == "int8-dynamic":  # int8 weights for every nn.Linear, activations quantized per call
            model = _quantize_int8_dynamic(model)
        self._tokenizer, self._model = tokenizer, model

    @property
    def tokenizer(self):
        self.load()
        return self._tokenizer

    @property
    def model(self):
        self.load()
        return self._model

    def stop_token_ids(self) -> list[int]:
        """Tokenizer EOS plus the model's declared EOS ids (explicit, and recorded in the manifest)."""
        ids: list[int] = []
        declared = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, declared):
            for token in value if isinstance(value, (list, tuple)) else [value]:
                if token is not None and token not in ids:
                    ids.append(int(token))
        return ids

    @property
    def uses_chat_template(self) -> bool:
        """Whether prompts are rendered with the tokenizer's chat template (which then brings the special tokens)."""
        return self.chat_template != "none" and bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, messages: Messages) -> str:
        """The exact string the model sees for ``messages``."""
        if self.chat_template == "none":
            return render_plain(messages)
        return render_prompt(self.tokenizer, messages)

    def generation_config(self, decoding: Decoding):
        from transformers import GenerationConfig

        sampling = not decoding.greedy
        return GenerationConfig(
            max_new_tokens=decoding.max_new_tokens,
            do_sample=sampling,
            temperature=decoding.temperature if sampling else None,
            top_p=decoding.top_p if sampling else None,
            top_k=None,
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.stop_token_ids(),
            return_dict_in_generate=True,
            output_scores=True,
        )

    # -- shared-prefix reuse ----------------------------------------------------------------------------
    # Few-shot prompts repeat the instruction and the shots before every item. The longest token prefix that all
    # the prompts of a generate() call share is run through the model once; its KV cache is kept (a small LRU,
    # keyed by the prefix's token ids, so later calls of the same task and shots reuse it) and each batch starts
    # from a copy of it, so only the items' own tokens are prefilled. A batch is laid out as prefix | padding |
    # item tokens, with the padding masked out; positions come from the attention mask, so every real token keeps
    # the position it has in the full prompt, and greedy replies equal those of the full prompts (tested).
    @staticmethod
    def _zero_prefix_stats() -> dict[str, int]:
        return {"prefix_computations": 0, "batches_reused": 0, "prompts_reused": 0, "reused_prompt_tokens": 0}

    def reset_stats(self) -> None:
        super().reset_stats()
        self.prefix_stats = self._zero_prefix_stats()

    def _prompt_ids(self, conversations: Sequence[Messages]) -> list[list[int]]:
        """The token ids of each prompt, unpadded (special tokens come from the chat template when there is one)."""
        prompts = [self.prompt_text(c) for c in conversations]
        return self.tokenizer(prompts, add_special_tokens=not self.uses_chat_template)["input_ids"]

    def _choose_prefix(self, ids: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], int] | None:
        """The prefix whose KV cache the prompts ``ids`` reuse and how many of its first tokens they share, or None.

        A kept prefix serves as far as the prompts agree with it (its cache is cut there: item texts that happen to
        begin alike make one call's common prefix a few tokens longer than the next's); the prompts' own common
        prefix becomes a new entry when it is at least :data:`PREFIX_MIN_TOKENS` tokens longer than that. At least
        one token of every prompt stays uncached: the model must run on it to give the first logits."""
        if self.prefix_cache == "off" or not ids:
            return None
        limit = min(len(x) for x in ids) - 1
        kept, used = (), 0
        for prefix in self._prefix_kv:
            n = min(common_prefix_length([prefix, *ids]), limit)
            if n > used:
                kept, used = prefix, n
        shared = min(common_prefix_length(ids), limit) if len(ids) > 1 else 0  # one prompt shares nothing
        if shared >= used + PREFIX_MIN_TOKENS:
            return tuple(ids[0][:shared]), shared
        return (kept, used) if used >= PREFIX_MIN_TOKENS else None

    def _prepare_misses(self, conversations: Sequence[Messages], decoding: Decoding) -> None:
        ids = self._prompt_ids(conversations)
        self._miss_lengths = [len(x) for x in ids]
        # the prefix shared by the whole call, so that batches of one reuse it too
        self._call_prefix = self._choose_prefix(ids) if len(conversations) > 1 else None

    def _batches(self, conversations: Sequence[Messages], decoding: Decoding) -> list[slice]:
        """Batches of at most :attr:`batch_size` prompts whose padded rows, with the reply budget, hold at most
        :attr:`batch_tokens` tokens: many short prompts go together, long few-shot prompts fewer at a time. The
        prompts' token counts are those :meth:`_prepare_misses` measured on the same misses just before."""
        lengths = self._miss_lengths
        batches, start = [], 0
        while start < len(lengths):
            end, width = start + 1, lengths[start]
            while end < len(lengths) and end - start < self.batch_size:
                wider = max(width, lengths[end])
                if (end - start + 1) * (wider + decoding.max_new_tokens) > self.batch_tokens:
                    break
                end, width = end + 1, wider
            batches.append(slice(start, end))
            start = end
        return batches

    def _prefix_kv_cache(self, prefix: tuple[int, ...]) -> Any:
        """The KV cache of ``prefix`` (computed on first use)."""
        import torch

        if prefix in self._prefix_kv:
            self._prefix_kv.move_to_end(prefix)
            return self._prefix_kv[prefix]
        model = self.model
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True)
        self._prefix_kv[prefix] = getattr(out, self._cache_argument())  # the output field has the argument's name
        self.prefix_stats["prefix_computations"] += 1
        while len(self._prefix_kv) > PREFIX_CACHE_ENTRIES:
            self._prefix_kv.popitem(last=False)
        return self._prefix_kv[prefix]

    def _batch_inputs(self, ids: Sequence[Sequence[int]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``generate`` inputs for the prompts ``ids``: left-padded input ids and attention mask, and an empty KV
        cache; or, with a shared prefix to reuse, prefix | masked padding | item tokens and a copy of the prefix's KV
        cache expanded to the batch. Either cache appends in place (:mod:`labscale.backends.kv_cache`)."""
        import torch

        pad = self.tokenizer.pad_token_id
        call = self._call_prefix
        if call is not None and all(len(x) > call[1] and tuple(x[: call[1]]) == call[0][: call[1]] for x in ids):
            chosen = call
        else:
            chosen = self._choose_prefix(ids)
        prefix, n = chosen if chosen else ((), 0)
        width = max(len(x) for x in ids) - n
        rows = [list(x[:n]) + [pad] * (width - len(x) + n) + list(x[n:]) for x in ids]
        mask = [[1] * n + [0] * (width - len(x) + n) + [1] * (len(x) - n) for x in ids]
        from .kv_cache import appending, appending_cache

        device = self.model.device
        encoded = {"input_ids": torch.tensor(rows, device=device), "attention_mask": torch.tensor(mask, device=device)}
        if not n:
            return encoded, {self._cache_argument(): appending_cache(self.model.config)}
        kv = self._prefix_kv_cache(prefix)
        with torch.inference_mode():
            kv = copy.deepcopy(kv)  # generate extends the cache it is given
            if n < len(prefix):
                kv.crop(n - len(prefix))  # negative: drop that many tokens from the end
            if len(ids) > 1:
                kv.batch_repeat_interleave(len(ids))
        self.prefix_stats["batches_reused"] += 1
        self.prefix_stats["prompts_reused"] += len(ids)
        self.prefix_stats["reused_prompt_tokens"] += n * len(ids)
        return encoded, {self._cache_argument(): appending(kv)}

    def _cache_argument(self) -> str:
        return cache_argument(self.model)

    # -- generation -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _generating(self) -> Iterator[None]:
        """bf16 linear layers on CPU run on weights reordered for oneDNN during the call (the same bits, faster;
        :mod:`labscale.backends.packed`), unless ``packed_weights=off``."""
        if self.packed_weights == "off":
            self.packed_layers = 0
            yield
            return
        from .packed import packed_linears

        with packed_linears(self.model) as count:
            self.packed_layers = count
            yield

    def _generate_batch(
        self, conversations: Sequence[Messages], decoding: Decoding, store: Callable[[int, Generation], None]
    ) -> None:
        import torch

        tokenizer, model = self.tokenizer, self.model
        encoded, reuse = self._batch_inputs(self._prompt_ids(conversations))
        if decoding.greedy:  # finished replies leave the batch (generate would decode them to the longest's end)
            new_tokens, logprobs = greedy_decode(
                model,
                encoded["input_ids"],
                encoded["attention_mask"],
                *reuse.values(),
                max_new_tokens=decoding.max_new_tokens,
                stop_ids=self.stop_token_ids(),
                pad_id=tokenizer.pad_token_id,
            )
        else:
            torch.manual_seed(decoding.seed)
            with torch.inference_mode():
                out = model.generate(**encoded, **reuse, generation_config=self.generation_config(decoding))
            new_tokens = out.sequences[:, encoded["input_ids"].shape[1] :]
            logprobs = chosen_logprobs(out.scores, new_tokens)
        stops = set(self.stop_token_ids())
        for j in range(len(conversations)):
            tokens = new_tokens[j].tolist()
            length = generated_length(tokens, stops)
            text = tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
            seq_logprob = float(logprobs[j, :length].sum().item()) if length else 0.0
            store(
                j,
                Generation(
                    text=text,
                    prompt_tokens=int(encoded["attention_mask"][j].sum().item()),
                    completion_tokens=length,
                    extra={
                        "logprob": seq_logprob,
                        "hit_stop": length < len(tokens) or (length > 0 and tokens[length - 1] in stops),
                    },
                ),
            )

    def runtime_info(self) -> dict[str, Any]:
        """Hardware and load settings for the run manifest (loads nothing that is not loaded yet)."""
        import torch

        info: dict[str, Any] = {
            "device": self.device,
            "dtype": self.dtype_name,
            "torch_dtype": str(self._torch_dtype()).replace("torch.", ""),  # what "auto"/"auto-bf16" resolved to
            "quantize": self.quantize,
            "load_in_4bit": self.load_in_4bit,
            **({"load_in_8bit": True} if self.load_in_8bit else {}),
            "batch_size": self.batch_size,
            "batch_tokens": self.batch_tokens,
            "threads": torch.get_num_threads(),
            "prefix_cache": self.prefix_cache,
            "prefix_reuse": dict(self.prefix_stats),
            "packed_weights": self.packed_weights,
            "packed_layers": self.packed_layers,
        }
        if self.device == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
        else:
            from .precision import cpu_supports_bf16

            info["cpu_bf16"] = cpu_supports_bf16()  # native bf16 (avx512_bf16/amx_bf16): dtype=auto-bf16 picks it
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if self._model is not None:
            info["stop_token_ids"] = self.stop_token_ids()
            info["chat_template_used"] = self.uses_chat_template
        return info

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
        self._prefix_kv.clear()
