"""What each regime costs: the study's Table 3 rebuilt from our run records, with a dated price table.

Prices
    ``reference/prices.csv`` holds one row per price: ``kind`` (``api_input_per_1k``, ``api_output_per_1k``,
    ``api_training_per_1k``, ``gpu_hour``), ``item`` (an API model snapshot, ``ft:<base>`` for fine-tuned
    models of a base, or a GPU offering), ``usd``, ``date`` (when the price applied), ``source`` (citation),
    ``note`` (assumptions) and ``study`` (True for the prices the study's Table 3 used). :func:`load_prices`
    reads it; ``as_of`` picks, per (kind, item), the latest price dated on or before that day.

Which price a model gets
    An API model id is priced under its own item when the table has one, else through a *price map*.
    ``price_map="study"`` (the default of :func:`cost_table`) reproduces the study's choices: its GPT-3.5-Turbo
    runs called ``gpt-3.5-turbo-0613`` but were priced at the ``gpt-3.5-turbo-1106`` rate ($0.001/1k).
    ``price_map="listed"`` prices every snapshot at its own listed price (0613: $0.0015/1k). A fine-tuned id
    ``ft:<base>:<org>::<id>`` is priced under ``ft:<base>``, else ``ft:<base without -MMDD>``. The item used is
    recorded in every cost row (``price_items``).

Tokens
    API runs are costed from the token counts the API reported (the ``prompt_tokens`` / ``completion_tokens``
    of each prediction, which include replies served from the response cache; else the manifest's ``usage``
    totals, which count cache misses only). Without them, :func:`count_tokens` counts offline: tiktoken when
    its encoding file is on disk (``TIKTOKEN_CACHE_DIR``; the tiktoken cache files shipped inside the
    ``litellm`` wheel are used when litellm is installed, without importing it), else the chars/4 rule of
    thumb. Chat messages get OpenAI's per-message overhead (3 tokens per message, 1 per ``name``, 3 to prime
    the reply), as the study's ``compute_oai_tokens.py`` did. Every count comes with a method string, recorded
    in the cost rows (``token_method``).

Local runs
    Costed as wall hours (``manifest.wall_seconds``) x the hourly price of the GPU offering passed as ``gpu``
    (default the study's $0.32/h GCP T4 spot). The hardware the run was *measured* on is recorded beside it:
    hours measured on a CPU priced at a T4 rate are not the study's hours. Runs served from the response cache
    take almost no wall time; ``cache_hit_rate`` is recorded so such rows can be recognised.

Fine-tuning records (the ``fine-tuning`` rows)
    Found under the runs root and under any folders or files passed as ``finetune_records``:

    * ``finetune.json``: what :func:`labscale.api_finetune.start_job` writes, one folder per job;
    * ``labscale_card.json``: the card :func:`labscale.finetune.finetune` writes into a LoRA adapter folder
      (read as ``backend="hf"``, ``base_model=card["base_model"]["spec"]``, ``task``, ``wall_seconds`` plus the
      earlier attempts' time of a resumed fine-tune and the hours lost to its interruptions (``attempts``, see
      :mod:`labscale.finetune.attempts`; the ``lost_hours`` column), ``hardware``; linked to evaluation runs whose
      ``adapter=`` option names that folder; cards of merged models, which carry ``merged_from_adapter``, are
      skipped so nothing is counted twice);
    * ``manifest.json`` files whose ``kind`` is ``"finetune"``.

    Fields read from ``finetune.json`` / ``kind="finetune"`` manifests:

    * ``kind``: must be ``"finetune"``;
    * ``backend``: ``"openai"`` (costed by ``trained_tokens``) or ``"hf"`` (costed by ``wall_seconds``);
      inferred from ``trained_tokens`` when absent;
    * ``base_model``: the base model's label or spec (``gpt-3.5-turbo``, ``openai:gpt-3.5-turbo-0613``,
      ``mistral-7b-instruct``);
    * ``task``: the task trained on (optional);
    * ``model_string``: the model spec under which the tuned model is evaluated (``openai:ft:...``,
      ``hf:...?adapter=...``), ``fine_tuned_model`` (the API's ``ft:`` id) and/or ``adapter_dir``: any of them
      links the record to the evaluation runs of the tuned model;
    * ``trained_tokens``: billed training tokens (API jobs);
    * ``wall_seconds``: training time in seconds (billed for local jobs; informational for API jobs);
    * ``status``: records whose status is present and not ``"succeeded"`` are skipped;
    * ``hardware``: optional, as in run manifests.

    As in the study's Table 3, a ``fine-tuning`` row is the training cost plus one evaluation pass of the
    tuned model (when its evaluation run is found; the ``note`` says which), and the evaluation run itself is
    also listed as the ``fine-tuned`` row (inference only).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd

from . import records
from .api_finetune import RECORD_NAME as JOB_RECORD
from .errors import InvalidParameter, check_choice, invalid_choice
from .finetune import CARD_FILE

PRICE_KINDS = ("api_input_per_1k", "api_output_per_1k", "api_training_per_1k", "gpu_hour")
PRICE_COLUMNS = ("kind", "item", "usd", "date", "source", "note", "study")
DEFAULT_GPU = "gcp-t4-spot"
DEFAULT_TOKEN_MODEL = "gpt-3.5-turbo-0613"

#: how the study priced model ids the price table does not list under their own name
STUDY_PRICE_MAP = {
    "gpt-3.5-turbo-0613": "gpt-3.5-turbo-1106",
    "gpt-3.5-turbo": "gpt-3.5-turbo-1106",
    "gpt-4-turbo": "gpt-4-1106-preview",
    "gpt-4-turbo-preview": "gpt-4-1106-preview",
}
#: each snapshot at its own listed price; bare names resolve as labscale's aliases do
LISTED_PRICE_MAP = {
    "gpt-3.5-turbo": "gpt-3.5-turbo-0613",
    "gpt-4-turbo": "gpt-4-1106-preview",
    "gpt-4-turbo-preview": "gpt-4-1106-preview",
}
PRICE_MAPS = {"study": STUDY_PRICE_MAP, "listed": LISTED_PRICE_MAP, "none": {}}

#: OpenAI's chat-format overhead (OpenAI cookbook, as in the study's compute_oai_tokens.py)
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

#: display order of regimes in cost tables
REGIMES = ("0-shot", "1-shot", "2-shot", "3-shot", "fine-tuning", "fine-tuned")

STUDY_TABLE3_CITATION = (
    "Wolfe et al. (2024), Laboratory-Scale AI, ACM FAccT '24, Table 3 (climate fact-checking test set, 1,535 items)"
)
STUDY_ORIGIN = "Wolfe et al. 2024, Table 3"
OUR_ORIGIN = "this book (run records)"


# -- prices ----------------------------------------------------------------------------------------------
def _as_date(value: Any, what: str = "as_of") -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidParameter(f"{what} must be a date such as '2023-11-06', got {value!r}") from None
    if pd.isna(stamp):
        raise InvalidParameter(f"{what} must be a date such as '2023-11-06', got {value!r}")
    return stamp.normalize()


@lru_cache(maxsize=1)
def _price_table() -> pd.DataFrame:
    with resources.files("labscale.reference").joinpath("prices.csv").open() as handle:
        table = pd.read_csv(handle, dtype={"kind": str, "item": str, "source": str, "note": str})
    table["date"] = pd.to_datetime(table["date"], format="%Y-%m-%d")
    table["note"] = table["note"].fillna("")
    table["study"] = table["study"].astype(bool)
    return table[list(PRICE_COLUMNS)]


def load_prices(as_of: Any = None) -> pd.DataFrame:
    """The dated price table (``reference/prices.csv``).

    With ``as_of=None`` every row, the full price history. With a date, the price in effect on that day: per
    (kind, item) the latest row dated on or before ``as_of`` (items with no price by then are left out).
    """
    table = _price_table().copy()
    if as_of is None:
        return table.reset_index(drop=True)
    day = _as_date(as_of)
    table = table[table["date"] <= day].sort_values("date")
    return table.groupby(["kind", "item"], sort=False).tail(1).sort_index().reset_index(drop=True)


def price_row(kind: str, item: str, as_of: Any = None, *, prices: pd.DataFrame | None = None) -> pd.Series:
    """The row of ``prices`` (default: the full table) giving ``kind`` for ``item`` on ``as_of`` (default: latest)."""
    check_choice("price kind", kind, PRICE_KINDS)
    table = _price_table() if prices is None else prices
    of_kind = table[table["kind"] == kind]
    rows = of_kind[of_kind["item"] == item]
    if rows.empty:
        raise InvalidParameter(
            f"no {kind} price for {item!r}; valid items: " + ", ".join(repr(i) for i in sorted(set(of_kind["item"])))
        )
    if as_of is not None:
        day = _as_date(as_of)
        dated = rows[pd.to_datetime(rows["date"]) <= day]
        if dated.empty:
            first = pd.to_datetime(rows["date"]).min().date()
            raise InvalidParameter(
                f"no {kind} price for {item!r} on or before {day.date()}; the earliest is dated {first}"
            )
        rows = dated
    return rows.sort_values("date").iloc[-1]


def price(kind: str, item: str, as_of: Any = None, *, prices: pd.DataFrame | None = None) -> float:
    """One price in US dollars (per 1k tokens for ``api_*`` kinds, per hour for ``gpu_hour``).

    Raises :class:`~labscale.errors.InvalidParameter` naming the valid kinds or items.
    """
    return float(price_row(kind, item, as_of, prices=prices)["usd"])


def training_cost(hours: float, gpu: str, as_of: Any = None, *, prices: pd.DataFrame | None = None) -> float:
    """The cost of ``hours`` of GPU time on the ``gpu`` offering (a ``gpu_hour`` item of the price table) at its
    price on ``as_of`` (default: the latest): hours x $/h, unrounded (the transparency cards' training cost)."""
    return float(hours) * price("gpu_hour", gpu, as_of, prices=prices)


def _bare_model_id(model: str) -> str:
    """``openai:gpt-4-1106-preview?x=y`` -> ``gpt-4-1106-preview``."""
    text = model.split("?", 1)[0]
    text = text.removeprefix("openai:")
    return text


def price_item(
    model: str, kind: str, *, prices: pd.DataFrame | None = None, price_map: str | Mapping[str, str] = "study"
) -> str:
    """The price-table item under which ``model`` (an API model id or ``openai:`` spec) is priced for ``kind``."""
    check_choice("price kind", kind, PRICE_KINDS)
    mapping = PRICE_MAPS[price_map] if isinstance(price_map, str) and price_map in PRICE_MAPS else price_map
    if isinstance(mapping, str):
        raise invalid_choice("price map", mapping, sorted(PRICE_MAPS))
    table = _price_table() if prices is None else prices
    items = set(table.loc[table["kind"] == kind, "item"])
    model_id = _bare_model_id(model)
    candidates = [model_id]
    if model_id.startswith("ft:"):
        base = model_id.split(":")[1] if model_id.count(":") >= 1 else ""
        candidates += [f"ft:{base}", f"ft:{re.sub(r'-[0-9]{4}$', '', base)}"]
    elif kind == "api_training_per_1k":  # training is priced per base model under its ft: item
        candidates += [f"ft:{model_id}", f"ft:{re.sub(r'-[0-9]{4}$', '', model_id)}"]
    for candidate in candidates:  # the price map comes first: it exists to override a listed snapshot
        if candidate in mapping and mapping[candidate] in items:
            return mapping[candidate]
        if candidate in items:
            return candidate
    raise InvalidParameter(
        f"no {kind} price for model {model_id!r}; valid items: "
        + ", ".join(repr(i) for i in sorted(items))
        + " (or add a mapping through price_map=)"
    )


# -- tokens ----------------------------------------------------------------------------------------------
_TIKTOKEN_BLOBS = {
    name: f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    for name in ("cl100k_base", "o200k_base", "p50k_base")
}


def _litellm_tiktoken_dir() -> Path | None:
    """The tiktoken cache folder inside an installed ``litellm`` wheel (found without importing litellm)."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def _tiktoken_cache_dir() -> Path:
    import tempfile

    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _encoding_name(model: str) -> str:
    model_id = _bare_model_id(model)
    if model_id.startswith("ft:"):
        model_id = model_id.split(":")[1]
    if model_id.startswith(("gpt-4o", "o1", "o3", "o4", "gpt-4.1", "gpt-5")):
        return "o200k_base"
    return "cl100k_base"  # gpt-3.5-turbo*, gpt-4*, text-embedding-3*, and the default for anything else


@lru_cache(maxsize=4)
def _tiktoken_encoding(name: str, allow_download: bool):
    """A tiktoken encoding, or None when tiktoken is missing or its file is not on disk (and no download)."""
    if importlib.util.find_spec("tiktoken") is None:
        return None
    import hashlib

    if not (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")):
        bundled = _litellm_tiktoken_dir()
        if bundled is not None:
            os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    cached = _tiktoken_cache_dir() / hashlib.sha1(_TIKTOKEN_BLOBS.get(name, name).encode()).hexdigest()
    if not cached.is_file() and not allow_download:
        return None
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception:  # noqa: BLE001 - offline: requests' ConnectionError, or a corrupt cache file
        return None


def token_counter(model: str = DEFAULT_TOKEN_MODEL, *, method: str = "auto"):
    """``(count_text, description)`` for ``model``: tiktoken when available (``method`` "auto"/"tiktoken"),
    else the chars/4 rule (``method`` "auto"/"chars4")."""
    check_choice("token counting method", method, ("auto", "tiktoken", "chars4"))
    if method in ("auto", "tiktoken"):
        name = _encoding_name(model)
        encoding = _tiktoken_encoding(name, method == "tiktoken")
        if encoding is not None:
            return (lambda text: len(encoding.encode(text, disallowed_special=()))), f"tiktoken {name}"
        if method == "tiktoken":
            raise InvalidParameter(
                f"tiktoken cannot load the {name} encoding here (is tiktoken installed, and is its file in "
                f"TIKTOKEN_CACHE_DIR? the litellm wheel ships one); use method='auto' for the chars/4 fallback"
            )
    return (lambda text: math.ceil(len(text) / 4)), "chars/4 approximation (no tiktoken encoding available)"


def _is_message(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "content" in obj


def count_tokens(texts_or_messages: Any, model: str = DEFAULT_TOKEN_MODEL, *, method: str = "auto") -> tuple[int, str]:
    """Count tokens offline; returns ``(count, method)`` where ``method`` says how they were counted.

    Accepts a string, a list of strings (summed), one chat conversation (a list of ``{"role", "content"}``
    dicts) or a list of conversations (summed). Conversations include OpenAI's chat overhead: 3 tokens per
    message (+1 per ``name``) and 3 to prime the reply, as the study's ``compute_oai_tokens.py`` counted.
    Text is tokenized with tiktoken when its encoding file is available offline, else by the chars/4 rule
    (``ceil(len(text) / 4)`` per text), an approximation for English text.
    """
    count, description = token_counter(model, method=method)
    if isinstance(texts_or_messages, str):
        return count(texts_or_messages), description
    items = list(texts_or_messages)
    if not items:
        return 0, description
    if _is_message(items[0]):
        conversations = [items]
    elif isinstance(items[0], (list, tuple)) and (not items[0] or _is_message(items[0][0])):
        conversations = [list(c) for c in items]
    else:
        if not all(isinstance(t, str) for t in items):
            raise InvalidParameter(
                "count_tokens takes a string, a list of strings, a conversation (list of "
                "role/content dicts) or a list of conversations"
            )
        return sum(count(t) for t in items), description
    total = 0
    for conversation in conversations:
        if not conversation:
            continue
        for message in conversation:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += count(str(value))
                if key == "name":
                    total += TOKENS_PER_NAME
        total += REPLY_PRIMING_TOKENS
    return total, (f"{description}; chat overhead {TOKENS_PER_MESSAGE}/message + {REPLY_PRIMING_TOKENS} reply priming")


# -- run records -----------------------------------------------------------------------------------------
def _load_run(run: Any) -> dict[str, Any]:
    """``{"manifest", "params", "predictions", "path"}`` of a run: a run folder or its ``manifest.json`` (read by
    :func:`labscale.records.read_run`), a ``read_run`` record, or a bare manifest dict."""
    if isinstance(run, (str, os.PathLike)):
        path = Path(run)
        run_dir = path.parent if path.is_file() else path
        missing = [name for name in records.FILES if not (run_dir / name).is_file()]
        if missing:
            raise InvalidParameter(f"{str(run_dir)!r} is not a complete run record (no {', '.join(missing)})")
        run = records.read_run(run_dir)
    if not isinstance(run, Mapping):
        raise InvalidParameter(
            f"run must be a run folder, a manifest path or a manifest dict, got {type(run).__name__}"
        )
    if "manifest" not in run:  # a bare manifest
        return {"manifest": dict(run), "params": {}, "predictions": None, "path": None}
    predictions = run.get("predictions")
    if isinstance(predictions, pd.DataFrame):
        predictions = predictions.to_dict("records")
    return {
        "manifest": dict(run["manifest"]),
        "params": dict(run.get("params") or {}),
        "predictions": predictions,
        "path": run.get("path"),
    }


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _replies(predictions: Sequence[Mapping[str, Any]]) -> list[str]:
    """The reply texts of ``predictions`` (a missing reply is empty)."""
    return ["" if _is_missing(p.get("reply")) else str(p["reply"]) for p in predictions]


def _model_info(record: Mapping[str, Any]) -> dict[str, Any]:
    """backend, model id, base_url, label and adapter of a run (from its manifest, else its params)."""
    manifest, params = record["manifest"], record["params"]
    model = manifest.get("model")
    info: dict[str, Any] = dict(model) if isinstance(model, Mapping) else {}
    label = params.get("model") or info.get("spec") or (model if isinstance(model, str) else None)
    if label and ("backend" not in info or "model" not in info):
        from .backends import parse_model_spec

        try:
            spec = parse_model_spec(label)
            info.setdefault("backend", spec.backend)
            info.setdefault("model", spec.model)
            if "base_url" in spec.options:
                info.setdefault("base_url", spec.options["base_url"])
        except InvalidParameter:
            pass
    info["label"] = label or info.get("model") or "?"
    query = dict(parse_qsl(str(info["label"]).partition("?")[2]))
    # the runner records an adapter in params (its model label stays the base model's)
    info["adapter"] = query.get("adapter") or params.get("adapter")
    return info


def _is_paid_api(info: Mapping[str, Any]) -> bool:
    from .backends.openai_api import OPENAI_BASE_URL, is_official_openai

    return info.get("backend") == "openai" and is_official_openai(info.get("base_url") or OPENAI_BASE_URL)


def _run_tokens(
    record: Mapping[str, Any], model_id: str, conversations: Any = None, method: str = "auto", api: bool = True
) -> tuple[int, int, str]:
    manifest, predictions = record["manifest"], record["predictions"]
    reported = "reported usage" if api else "the model's own tokenizer"
    if conversations is not None:
        inp, how = count_tokens(conversations, model_id, method=method)
        out = 0
        if predictions:
            out, _ = count_tokens(_replies(predictions), model_id, method=method)
        return inp, out, f"counted: {how}"
    if predictions and all(not _is_missing(p.get("prompt_tokens")) for p in predictions):
        inp = int(sum(p["prompt_tokens"] for p in predictions))
        completions = [p.get("completion_tokens") for p in predictions]
        if all(not _is_missing(c) for c in completions):
            return inp, int(sum(completions)), f"{reported} (per prediction, cached replies included)"
        out, how = count_tokens(_replies(predictions), model_id, method=method)
        return inp, out, f"{reported} for input; output counted: {how}"
    usage = manifest.get("usage") or {}
    if usage.get("prompt_tokens") and not usage.get("cache_hits"):
        return (int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0), f"{reported} (manifest totals)")
    example = manifest.get("example_messages")
    items = manifest.get("items") or (len(predictions) if predictions else None)
    if example and items:
        per_item, how = count_tokens(example, model_id, method=method)
        out = 0
        if predictions:
            out, _ = count_tokens(_replies(predictions), model_id, method=method)
        return per_item * int(items), out, f"estimated: {how}, first item's prompt x {items} items"
    raise InvalidParameter(
        "the run record reports no token usage and holds no prompt to count; pass conversations=... to run_cost"
    )


def _hardware_label(hardware: Mapping[str, Any] | None) -> str:
    if not hardware:
        return "unknown"
    if hardware.get("gpu"):
        return str(hardware["gpu"])
    if hardware.get("cuda") is False:
        return f"CPU ({hardware.get('cpu_count', '?')} cores)"
    return str(hardware.get("machine") or "unknown")


def _regime(params: Mapping[str, Any], fine_tuned: bool) -> str:
    shots = params.get("shots")
    if fine_tuned:
        return "fine-tuned" if not shots else f"fine-tuned {shots}-shot"
    return f"{shots}-shot" if shots is not None else "?"


def _display_model(label: str) -> str:
    """The alias for a spec when there is one (``openai:gpt-3.5-turbo-0613`` -> ``gpt-3.5-turbo``)."""
    from .backends import ALIASES

    if label in ALIASES:
        return label
    forms = [label] if re.match(r"^(hf|openai):", label) else [label, f"openai:{label}", f"hf:{label}"]
    for alias, target in ALIASES.items():
        if target in forms:
            return alias
    return label


def _base_of_fine_tuned(info: Mapping[str, Any]) -> str | None:
    """The base model label of an ``ft:`` id or an ``adapter=`` spec; None for other models."""
    model_id = str(info.get("model") or "")
    if model_id.startswith("ft:"):
        return _display_model(f"openai:{model_id.split(':')[1]}")
    if info.get("adapter"):
        body, _, query = str(info["label"]).partition("?")
        rest = "&".join(f"{k}={v}" for k, v in parse_qsl(query) if k != "adapter")
        return _display_model(body + (f"?{rest}" if rest else ""))
    return None


def run_cost(
    run: Any,
    prices: pd.DataFrame | None = None,
    *,
    gpu: str = DEFAULT_GPU,
    as_of: Any = None,
    price_map: str | Mapping[str, str] = "study",
    include_output: bool = True,
    conversations: Any = None,
    token_method: str = "auto",
) -> dict[str, Any]:
    """The cost of one evaluation run (a run folder, its ``manifest.json``, a manifest dict or a read_run record).

    API models on api.openai.com are costed as input tokens x input price (+ output tokens x output price
    unless ``include_output=False``, which is what the study did); every other run (local transformers, or an
    OpenAI-compatible server we host) as wall hours x the ``gpu`` offering's hourly price. Returns a dict with
    input/output tokens, the token-count method, hours, the prices used and the total ``usd``.
    """
    record = _load_run(run)
    manifest, params = record["manifest"], record["params"]
    prices = load_prices(as_of) if prices is None else prices
    info = _model_info(record)
    model_id = str(info.get("model") or info["label"])
    wall = manifest.get("wall_seconds")
    hours = float(wall) / 3600 if not _is_missing(wall) else float("nan")
    usage = manifest.get("usage") or {}
    requests = usage.get("requests") or 0
    api = _is_paid_api(info)
    row: dict[str, Any] = {
        "model": info["label"],
        "model_id": model_id,
        "task": params.get("task"),
        "shots": params.get("shots"),
        "items": manifest.get("items"),
        "pricing": "api tokens" if api else "gpu hours",
        "hours": hours,
        "hardware": _hardware_label(manifest.get("hardware")),
        "cache_hit_rate": manifest.get("cache_hit_rate", (usage.get("cache_hits", 0) / requests) if requests else None),
        "run": str(record["path"]) if record["path"] is not None else None,
    }
    try:
        inp, out, how = _run_tokens(record, model_id, conversations, token_method, api)
    except InvalidParameter:
        if api:
            raise
        inp, out, how = None, None, "not recorded"
    row.update(input_tokens=inp, output_tokens=out, token_method=how)
    if api:
        item_in = price_item(model_id, "api_input_per_1k", prices=prices, price_map=price_map)
        p_in = price("api_input_per_1k", item_in, as_of, prices=prices)
        p_out, item_out = 0.0, None
        if include_output:
            item_out = price_item(model_id, "api_output_per_1k", prices=prices, price_map=price_map)
            p_out = price("api_output_per_1k", item_out, as_of, prices=prices)
        row.update(
            usd_per_1k_input=p_in,
            usd_per_1k_output=p_out if include_output else None,
            usd_per_hour=None,
            input_usd=inp / 1000 * p_in,
            output_usd=out / 1000 * p_out,
            price_items=", ".join(dict.fromkeys(i for i in (item_in, item_out) if i)),
        )
        row["usd"] = row["input_usd"] + row["output_usd"]
    else:
        per_hour = price("gpu_hour", gpu, as_of, prices=prices)
        row.update(
            usd_per_1k_input=None,
            usd_per_1k_output=None,
            usd_per_hour=per_hour,
            input_usd=None,
            output_usd=None,
            price_items=gpu,
            usd=hours * per_hour,
        )
    return row


# -- fine-tuning records ---------------------------------------------------------------------------------
#: the machine-readable card :func:`labscale.finetune.finetune` writes into each LoRA adapter folder
ADAPTER_CARD = CARD_FILE
#: the files that record a fine-tune: an API job's record (:mod:`labscale.api_finetune`) and an adapter's card
FINETUNE_FILES = (JOB_RECORD, ADAPTER_CARD)


def _finetune_files(root: Path | None, extra: Iterable[Any]) -> list[Path]:
    files: list[Path] = []
    folders = [root] if root is not None and root.is_dir() else []
    for item in extra:
        path = Path(item)
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidParameter(f"fine-tuning record {str(path)!r} does not exist")
    for folder in folders:
        for name in FINETUNE_FILES:
            files += sorted(folder.rglob(name))
        files += records.find_finetune_manifests(folder)
    return list(dict.fromkeys(p.resolve() for p in files))


def adapter_training_seconds(card: Mapping[str, Any]) -> tuple[float | None, float]:
    """The billed seconds of the fine-tune an adapter ``card`` records (its final attempt's wall time plus the earlier
    attempts' of a resumed run, :mod:`labscale.finetune.attempts`) and the seconds redone after its interruptions."""
    attempts = card.get("attempts") or {}
    wall = card.get("wall_seconds")
    billed = None if wall is None else float(wall) + float(attempts.get("earlier_seconds", 0.0))
    return billed, float(attempts.get("lost_seconds", 0.0))


def finetune_record(path: str | Path) -> dict[str, Any] | None:
    """A fine-tuning record as a dict (see the module docstring), or None when the file is not one."""
    path = Path(path)
    record = json.loads(path.read_text())
    if not isinstance(record, Mapping):
        return None
    if path.name == ADAPTER_CARD:  # a local LoRA adapter's card (labscale.finetune)
        if record.get("merged_from_adapter"):  # a merged copy of an adapter already counted
            return None
        base = record.get("base_model")
        billed, lost = adapter_training_seconds(record)
        record = {
            "kind": "finetune",
            "backend": "hf",
            "task": record.get("task"),
            "base_model": base.get("spec") if isinstance(base, Mapping) else base,
            "adapter_dir": str(path.parent),
            "wall_seconds": billed,
            "lost_seconds": lost,
            "interruptions": (record.get("attempts") or {}).get("interrupted", 0),
            "train_tokens": record.get("train_tokens"),
            "hardware": record.get("hardware"),
            "written_at": record.get("created_at", ""),
        }
    if record.get("kind") != "finetune":
        return None
    record = dict(record)
    record["path"] = str(path)
    if "backend" not in record:
        record["backend"] = "openai" if record.get("trained_tokens") is not None else "hf"
    return record


def linked_evaluation_runs(record: Mapping[str, Any], runs_root: str | Path) -> list[Path]:
    """The evaluation run folders under ``runs_root`` that evaluate the model a fine-tuning ``record``
    (:func:`finetune_record`) produced, linked as :func:`cost_table` links them."""
    root = Path(runs_root)
    found = []
    for run_dir in records.find_runs(root) if root.is_dir() else []:
        manifest = records.read_manifest(run_dir)
        if manifest.get("kind") == "finetune" or not (run_dir / "params.json").is_file():
            continue
        params = json.loads((run_dir / "params.json").read_text())
        if _finetune_links(record, _model_info({"manifest": manifest, "params": params})):
            found.append(run_dir)
    return found


def _same_path(a: Any, b: Any) -> bool:
    if not a or not b:
        return False
    try:
        return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def _finetune_links(record: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    """Whether the evaluation run described by ``info`` evaluates the model ``record`` produced."""
    names = {record.get("model_string"), record.get("fine_tuned_model")} - {None, ""}
    if names & {info.get("label"), info.get("model"), info.get("spec")}:
        return True
    return _same_path(record.get("adapter_dir"), info.get("adapter"))


def _order(df: pd.DataFrame) -> pd.DataFrame:
    regime_rank = {r: i for i, r in enumerate(REGIMES)}
    df = df.assign(_r=df["regime"].map(lambda r: regime_rank.get(r, len(REGIMES))))
    return df.sort_values(["model", "task", "_r", "regime"], kind="stable").drop(columns="_r").reset_index(drop=True)


COST_COLUMNS = [
    "model",
    "task",
    "regime",
    "input_tokens",
    "output_tokens",
    "training_tokens",
    "hours",
    "lost_hours",
    "usd_per_1k_input",
    "usd_per_1k_output",
    "usd_per_1k_training",
    "usd_per_hour",
    "usd",
    "pricing",
    "price_items",
    "token_method",
    "hardware",
    "items",
    "cache_hit_rate",
    "note",
    "run",
]


def cost_table(
    runs_root: str | Path,
    *,
    gpu: str = DEFAULT_GPU,
    prices: pd.DataFrame | None = None,
    as_of: Any = None,
    price_map: str | Mapping[str, str] = "study",
    include_output: bool = True,
    task: str | None = None,
    finetune_records: Sequence[Any] = (),
    token_method: str = "auto",
) -> pd.DataFrame:
    """The study's Table 3 rebuilt from our run records: one row per (model, task, regime).

    Regimes are ``k-shot`` (evaluation runs), ``fine-tuned`` (evaluation runs of a tuned model: an ``ft:`` id,
    an ``adapter=`` spec or a model linked by a fine-tuning record) and ``fine-tuning`` (one per fine-tuning
    record: training plus one evaluation pass of the tuned model, as the study counted). API models are costed
    by tokens x price, everything else by wall hours x ``gpu``'s hourly price (see the module docstring for
    the fields read). When several runs share a (model, task, regime), the most recently written is used.
    ``include_output=False`` ignores output tokens, as the study did.
    """
    root = Path(runs_root)
    prices = load_prices(as_of) if prices is None else prices
    finetunes = [r for r in (finetune_record(p) for p in _finetune_files(root, finetune_records)) if r is not None]
    skipped = [r for r in finetunes if r.get("status") not in (None, "succeeded")]
    finetunes = [r for r in finetunes if r.get("status") in (None, "succeeded")]

    rows: list[dict[str, Any]] = []
    by_record: dict[str, list[dict[str, Any]]] = {r["path"]: [] for r in finetunes}
    for run_dir in records.find_runs(root) if root.is_dir() else []:
        if records.read_manifest(run_dir).get("kind") == "finetune":  # a fine-tuning record, read above
            continue
        record = _load_run(run_dir)
        manifest = record["manifest"]
        if task is not None and record["params"].get("task") != task:
            continue
        info = _model_info(record)
        linked = [r for r in finetunes if _finetune_links(r, info)]
        base = (
            _display_model(str(linked[0]["base_model"]))
            if linked and linked[0].get("base_model")
            else _base_of_fine_tuned(info)
        )
        fine_tuned = bool(linked) or base is not None
        cost = run_cost(
            record,
            prices,
            gpu=gpu,
            as_of=as_of,
            price_map=price_map,
            include_output=include_output,
            token_method=token_method,
        )
        row = {
            **cost,
            "model": base if fine_tuned and base else _display_model(info["label"]),
            "regime": _regime(record["params"], fine_tuned),
            "training_tokens": None,
            "usd_per_1k_training": None,
            "note": "" if not fine_tuned else f"evaluated as {info['label']}",
            "written_at": manifest.get("written_at", ""),
        }
        rows.append(row)
        for r in linked:
            by_record[r["path"]].append(row)

    for r in finetunes:
        base = _display_model(str(r.get("base_model") or r.get("model_string") or "?"))
        evals = [e for e in by_record[r["path"]] if r.get("task") in (None, e["task"])]
        if task is not None:
            evals = [e for e in evals if e["task"] == task]
            if not evals and r.get("task") not in (None, task):
                continue
        wall = r.get("wall_seconds")
        train_hours = float(wall) / 3600 if not _is_missing(wall) else float("nan")
        lost = r.get("lost_seconds")
        row: dict[str, Any] = {
            "model": base,
            "regime": "fine-tuning",
            "lost_hours": float(lost) / 3600 if not _is_missing(lost) else None,
            "hardware": _hardware_label(r.get("hardware")),
            "training_tokens": r.get("trained_tokens")
            if r.get("trained_tokens") is not None
            else r.get("train_tokens"),
            "run": r["path"],
            "written_at": r.get("written_at", ""),
        }
        if r["backend"] == "openai":
            if r.get("trained_tokens") is None:
                raise InvalidParameter(f"fine-tuning record {r['path']} has no trained_tokens")
            ft_model = r.get("fine_tuned_model") or f"ft:{_bare_model_id(str(r.get('base_model') or ''))}"
            item = price_item(ft_model, "api_training_per_1k", prices=prices, price_map=price_map)
            per_1k = price("api_training_per_1k", item, as_of, prices=prices)
            train_usd = int(r["trained_tokens"]) / 1000 * per_1k
            row.update(pricing="api tokens", usd_per_1k_training=per_1k, price_items=item)
        else:
            per_hour = price("gpu_hour", gpu, as_of, prices=prices)
            train_usd = train_hours * per_hour
            row.update(pricing="gpu hours", usd_per_hour=per_hour, price_items=gpu)
        evals = sorted(evals, key=lambda e: e.get("written_at", ""))
        if evals:
            ev = evals[-1]
            row.update(
                task=ev["task"],
                input_tokens=ev["input_tokens"],
                output_tokens=ev["output_tokens"],
                usd_per_1k_input=ev["usd_per_1k_input"],
                usd_per_1k_output=ev["usd_per_1k_output"],
                token_method=ev["token_method"],
                items=ev["items"],
                cache_hit_rate=ev["cache_hit_rate"],
                hours=train_hours + ev["hours"],
                usd=train_usd + ev["usd"],
                price_items=", ".join(dict.fromkeys([row["price_items"], *str(ev["price_items"]).split(", ")])),
                note="training + one evaluation pass of the tuned model (as the study's Table 3)",
            )
        else:
            row.update(
                task=r.get("task"),
                hours=train_hours,
                usd=train_usd,
                note="training only (no evaluation run of the tuned model found)",
            )
        if r.get("interruptions"):
            row["note"] += (
                f"; {r['interruptions']} interruption(s) (e.g. spot preemptions): every attempt is billed, "
                f"{row['lost_hours']:.2f} h of it redone after resuming from a checkpoint"
            )
        rows.append(row)

    if not rows:
        return pd.DataFrame(columns=COST_COLUMNS)
    df = pd.DataFrame(rows)
    for column in COST_COLUMNS:
        if column not in df:
            df[column] = None
    df = df.sort_values("written_at", kind="stable")
    counts = df.groupby(["model", "task", "regime"], dropna=False)["regime"].transform("size")
    df = df.drop_duplicates(["model", "task", "regime"], keep="last").copy()
    older = counts.loc[df.index] - 1
    df.loc[older > 0, "note"] = [
        f"{n}; {int(k)} older run(s) ignored".lstrip("; ")
        for n, k in zip(df.loc[older > 0, "note"], older[older > 0], strict=True)
    ]
    if skipped:
        df.attrs["skipped_finetune_records"] = [f"{r['path']} (status {r.get('status')})" for r in skipped]
    return _order(df[COST_COLUMNS])


# -- the study's Table 3 ---------------------------------------------------------------------------------
def study_table3() -> pd.DataFrame:
    """The study's published Table 3 (climate fact-checking test set), tidy: one row per (model, scenario).

    Columns: model, scenario, input_tokens, usd_per_1k, runtime_hours, gpu_usd_per_hour, total_usd, and for
    the GPT-3.5 fine-tuning row the training tokens and price given in the table's notes. Published reference
    values (:data:`STUDY_TABLE3_CITATION`), never our results.
    """
    with resources.files("labscale.reference").joinpath("table3.csv").open() as handle:
        table = pd.read_csv(handle)
    table["input_tokens"] = table["input_tokens"].astype("Int64")
    table["training_tokens"] = table["training_tokens"].astype("Int64")
    return table


def study_table3_check() -> pd.DataFrame:
    """The study's totals recomputed from its own inputs (tokens x $/1k + training; or hours x $/h).

    Adds ``recomputed_usd`` and ``difference`` (published minus recomputed). The published runtimes are
    rounded to 0.01 h, so a few totals differ by a cent from hours x $0.32.
    """
    table = study_table3()
    tokens = table["input_tokens"].astype(float).fillna(0) / 1000 * table["usd_per_1k"].fillna(0)
    training = table["training_tokens"].astype(float).fillna(0) / 1000 * table["training_usd_per_1k"].fillna(0)
    gpu = table["runtime_hours"] * table["gpu_usd_per_hour"]
    table["recomputed_usd"] = (tokens + training).where(table["gpu_usd_per_hour"].isna(), gpu)
    table["difference"] = (table["total_usd"] - table["recomputed_usd"]).round(4)
    return table


def study_claim(open_model: str = "mistral-7b-instruct", api_model: str = "gpt-4-turbo") -> str:
    """The study's cost claim in its own Table 3 numbers, as a sentence for a chapter (read from the reference
    file, never typed): the open model's fine-tuning hours and cost on a T4 against the API model's per-pass input
    tokens and cost across 0-3 shots."""
    table = study_table3()
    tune = table[(table["model"] == open_model) & (table["scenario"] == "fine-tuning")]
    tuned = table[(table["model"] == open_model) & (table["scenario"] == "fine-tuned")]
    api = table[(table["model"] == api_model) & table["scenario"].str.endswith("-shot")]
    if tune.empty or tuned.empty or api.empty:
        raise InvalidParameter(
            f"Table 3 has no fine-tuning rows for {open_model!r} or no k-shot rows for "
            f"{api_model!r}; models: {sorted(set(table['model']))}"
        )
    tune, tuned = tune.iloc[0], tuned.iloc[0]
    tokens, usd = api["input_tokens"].astype(int), api["total_usd"]
    return (
        f"Wolfe et al. (2024, Table 3): fine-tuning {open_model} took {tune['runtime_hours']:.2f} h on a T4 "
        f"(${tune['total_usd']:.2f} at ${tune['gpu_usd_per_hour']:.2f}/h) and one evaluation pass of the tuned "
        f"model {tuned['runtime_hours']:.2f} h (${tuned['total_usd']:.2f}); one {api_model} pass over the same "
        f"test set read {tokens.min():,} to {tokens.max():,} input tokens (0 to 3 shots) and cost "
        f"${usd.min():.2f} to ${usd.max():.2f}."
    )


def beside_study_table3(our_table: pd.DataFrame, *, task: str | None = "fact_checking") -> pd.DataFrame:
    """Our cost rows stacked above the study's Table 3, with an ``origin`` column keeping them apart.

    The study's Table 3 covers the fact-checking test set only, so ours are filtered to ``task`` (``None``:
    every task). Common columns: origin, model, scenario, input_tokens, usd_per_1k (input), runtime_hours,
    usd_per_hour, total_usd. The study's rows are cited reference values, never our results.
    """
    ours = our_table.copy()
    if task is not None and "task" in ours:
        ours = ours[ours["task"] == task]
    ours = pd.DataFrame(
        {
            "origin": OUR_ORIGIN,
            "model": ours["model"],
            "scenario": ours["regime"],
            "input_tokens": ours["input_tokens"],
            "usd_per_1k": ours["usd_per_1k_input"],
            "runtime_hours": ours["hours"],
            "usd_per_hour": ours["usd_per_hour"],
            "total_usd": ours["usd"],
        }
    )
    ref = study_table3()
    ref = pd.DataFrame(
        {
            "origin": STUDY_ORIGIN,
            "model": ref["model"],
            "scenario": ref["scenario"],
            "input_tokens": ref["input_tokens"],
            "usd_per_1k": ref["usd_per_1k"],
            "runtime_hours": ref["runtime_hours"],
            "usd_per_hour": ref["gpu_usd_per_hour"],
            "total_usd": ref["total_usd"],
        }
    )
    both = pd.concat([ours, ref], ignore_index=True)
    both["input_tokens"] = pd.to_numeric(both["input_tokens"], errors="coerce").astype("Int64")
    for column in ("usd_per_1k", "runtime_hours", "usd_per_hour", "total_usd"):
        both[column] = pd.to_numeric(both[column], errors="coerce")
    return both


def study_cost_quality(metric: str = "accuracy") -> pd.DataFrame:
    """The study's Table 3 costs joined with its Table 2 fact-checking ``metric`` (for a cost-quality plot).

    Both fine-tuning rows (training + evaluation) and fine-tuned rows (inference only) take the fine-tuned
    model's score.
    """
    from .report import study_table2

    quality = study_table2()
    quality = quality[(quality["task"] == "fact_checking") & (quality["metric"] == metric)]
    if quality.empty:
        raise invalid_choice("fact-checking metric", metric, ["accuracy", "f1_weighted"])
    scores = {(m, s): v for m, s, v in zip(quality["model"], quality["scenario"], quality["value"], strict=True)}
    table = study_table3()
    table["quality"] = [
        scores.get((m, "fine-tuned" if s == "fine-tuning" else s))
        for m, s in zip(table["model"], table["scenario"], strict=True)
    ]
    table["label"] = table["model"] + " " + table["scenario"]
    return table


# -- the companion study: LoRA Code Llama 34B against GPT-3.5 fine-tuning ----------------------------------
COMPANION_CITATION = (
    "Sam L'Huillier, GPT 3.5 vs Llama 2 fine-tuning: A Comprehensive Comparison, "
    "https://ragntune.com/blog/gpt3.5-vs-llama2-finetuning (about October 2023)"
)
COMPANION_OPEN_MODEL = "Code Llama 34B (LoRA, 8-bit)"
COMPANION_API_MODEL = "GPT-3.5 (gpt-3.5-turbo-0613 fine-tuning)"
#: the price-table items behind the companion study's two kinds of training cost
COMPANION_GPU = "a40"
COMPANION_TRAINING_ITEM = "ft:gpt-3.5-turbo"


def companion_costs() -> pd.DataFrame:
    """The companion study's training-cost table (``reference/companion_costs.csv``), one row per (task, model).

    The post's own values: ``task`` (``text_to_sql`` for its "SQL spider dataset", ``viggo`` for its
    "Functional representation dataset"), ``dataset`` (the post's label), ``model``, ``train_usd`` (its table),
    ``hours`` (its "(7 hour job)" / "(9 hour job)"; none for GPT-3.5), ``gpu``, ``source``, ``quote`` (the
    table cell verbatim) and ``date`` (of the earliest dated copy of the post).

    Derived here, our arithmetic and not the post's:

    * ``usd_per_hour`` and ``recomputed_usd``: the post's hours x the price-table A40 price ($0.475/h, itself
      quoted from the post): 7 h -> $3.325 and 9 h -> $4.275, so the post's $3.32 and $4.27 are hours x price
      truncated to the cent;
    * ``usd_per_1k_training`` and ``implied_training_tokens``: for the GPT-3.5 rows, the post's cost divided by
      OpenAI's training price on the post's date ($0.008 per 1k tokens), i.e. the billed training tokens
      (tokens x epochs) that cost implies, about 1.50M and 3.26M; the post reports no token counts;
    * ``ratio``: GPT-3.5's training cost over Code Llama's for the same task (the post's figures), 3.61 and
      6.10, which the post sums up as "GPT 3.5 costs 4-6x more to train" (3.61 is below its lower bound).

    The post gives its accuracies only as a chart, so no quality numbers are tabulated here.
    """
    with resources.files("labscale.reference").joinpath("companion_costs.csv").open() as handle:
        table = pd.read_csv(handle, dtype={"task": str, "dataset": str, "model": str, "gpu": str, "quote": str})
    table["gpu"] = table["gpu"].fillna("")
    day = table["date"]
    table["usd_per_hour"] = [
        price("gpu_hour", g, d) if g else float("nan") for g, d in zip(table["gpu"], day, strict=True)
    ]
    table["recomputed_usd"] = table["hours"] * table["usd_per_hour"]
    table["usd_per_1k_training"] = [
        float("nan") if g else price("api_training_per_1k", COMPANION_TRAINING_ITEM, d)
        for g, d in zip(table["gpu"], day, strict=True)
    ]
    tokens = table["train_usd"] / table["usd_per_1k_training"] * 1000
    table["implied_training_tokens"] = tokens.round().astype("Int64")
    open_usd = table[table["model"] == COMPANION_OPEN_MODEL].set_index("task")["train_usd"]
    api_usd = table[table["model"] == COMPANION_API_MODEL].set_index("task")["train_usd"]
    table["ratio"] = table["task"].map(api_usd / open_usd)
    return table


def companion_claim() -> str:
    """The companion study's cost claim as one sentence for a chapter, read from the reference files (never typed):
    the post's training costs and GPU hours per task, then our arithmetic on them (the GPT-3.5 / Code Llama
    ratio and the billed GPT-3.5 training tokens those costs imply)."""
    table = companion_costs()
    tuned = table[table["model"] == COMPANION_OPEN_MODEL].set_index("task")
    api = table[table["model"] == COMPANION_API_MODEL].set_index("task").loc[tuned.index]
    tasks = [f"the {d} ({t})" for t, d in zip(tuned.index, tuned["dataset"], strict=True)]
    own = [f"${u:.2f} ({h:g} h)" for u, h in zip(tuned["train_usd"], tuned["hours"], strict=True)]
    rate, per_1k = tuned["usd_per_hour"].iloc[0], api["usd_per_1k_training"].iloc[0]
    return (
        f"{COMPANION_CITATION}: LoRA fine-tuning of Code Llama 34B on an A40 at ${rate:.3f}/h (vast.ai) cost "
        f"{' and '.join(f'{o} on {t}' for o, t in zip(own, tasks, strict=True))}, against "
        f"{' and '.join(f'${u:.2f}' for u in api['train_usd'])} for fine-tuning GPT-3.5; by our arithmetic GPT-3.5 "
        f'cost {" and ".join(f"{r:.2f}x" for r in api["ratio"])} as much (the post\'s "4-6x"), and at '
        f"${per_1k:.3f} per 1k training tokens its costs imply about "
        f"{' and '.join(f'{n / 1e6:.2f}M' for n in api['implied_training_tokens'])} billed training tokens."
    )


# -- cost versus quality ---------------------------------------------------------------------------------
def pareto_frontier(df: pd.DataFrame, cost_col: str, quality_col: str) -> pd.Series:
    """Boolean mask of the rows on the cost-quality Pareto frontier (lower cost and higher quality are better).

    A row is on the frontier when no other row costs no more and scores at least as well, being strictly
    better on one of the two. Rows with a missing cost or quality are never on it; exact ties stay on it.
    """
    for column in (cost_col, quality_col):
        if column not in df:
            raise invalid_choice("column", column, list(df.columns))
    cost = pd.to_numeric(df[cost_col], errors="coerce").to_numpy(dtype=float)
    quality = pd.to_numeric(df[quality_col], errors="coerce").to_numpy(dtype=float)
    valid = ~(pd.isna(cost) | pd.isna(quality))
    mask = []
    for i in range(len(df)):
        if not valid[i]:
            mask.append(False)
            continue
        dominated = (cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i])) & valid
        mask.append(not dominated.any())
    return pd.Series(mask, index=df.index, name="pareto")


def join_quality(costs: pd.DataFrame, metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``costs`` (from :func:`cost_table`) with ``quality``: ``metric`` of the same run, and ``quality_low`` /
    ``quality_high``: its interval (``ci_low`` / ``ci_high``; missing where the run recorded none).

    ``metrics`` is :func:`labscale.records.metrics_table` output. Fine-tuning rows take the score and interval of
    the tuned model's evaluation run they include (matched on model, task and the ``fine-tuned`` regime).
    """
    sel = metrics[metrics["metric"] == metric]
    if sel.empty:
        raise invalid_choice("metric", metric, sorted(set(metrics["metric"])))
    columns = {"quality": "value", "quality_low": "ci_low", "quality_high": "ci_high"}
    out = costs.copy()
    tuning = out["regime"] == "fine-tuning"
    for column, source in columns.items():
        values = sel[source] if source in sel else pd.Series(None, index=sel.index, dtype=object)
        by_run = dict(zip(sel["run"].astype(str), values, strict=True))
        out[column] = pd.Series([by_run.get(str(r)) for r in out["run"]], index=out.index, dtype=object)
        tuned = {
            (m, t): q
            for m, t, g, q in zip(out["model"], out["task"], out["regime"], out[column], strict=True)
            if g == "fine-tuned"
        }
        out.loc[tuning, column] = pd.Series(
            [tuned.get((m, t)) for m, t in zip(out.loc[tuning, "model"], out.loc[tuning, "task"], strict=True)],
            index=out.index[tuning],
            dtype=object,
        )
        out[column] = pd.to_numeric(out[column], errors="coerce")
    out["label"] = out["model"] + " " + out["regime"]
    return out


# -- scaling out: what each command costs per hour ----------------------------------------------------------------
#: (what, command, GPU price item, reference job) for the book's "Scaling out" page; the job is a (source, model,
#: scenario or task) whose hours come from a reference table
SCALING_OUT_JOBS = (
    (
        "QLoRA fine-tune, spot, auto-recovered",
        "sky jobs launch recipes/skypilot/finetune.yaml",
        "gcp-t4-spot",
        ("table3", "falcon-7b-instruct", "fine-tuning"),
    ),
    (
        "QLoRA fine-tune, spot, auto-recovered",
        "sky jobs launch recipes/skypilot/finetune.yaml",
        "gcp-t4-spot",
        ("table3", "mistral-7b-instruct", "fine-tuning"),
    ),
    (
        "LoRA fine-tune on an A40 (the companion's)",
        "sky jobs launch recipes/skypilot/finetune.yaml",
        "a40",
        ("companion", COMPANION_OPEN_MODEL, "text_to_sql"),
    ),
    (
        "vLLM serving the adapters, evaluated",
        "sky serve up recipes/skypilot/serve.yaml",
        "gcp-t4-spot",
        ("table3", "mistral-7b-instruct", "fine-tuned"),
    ),
    (
        "one evaluation of the grid (3-shot)",
        "labscale-grid --workers N",
        "gcp-t4-spot",
        ("table3", "mistral-7b-instruct", "3-shot"),
    ),
    ("the GPU check", "labscale-gpu-check", "colab-pro-t4", None),
)


def scaling_out_costs(as_of: Any = None) -> pd.DataFrame:
    """What each scaling-out command costs per hour at the dated GPU prices, with a reference job's hours and cost.

    One row per :data:`SCALING_OUT_JOBS` entry: ``what``, ``command``, ``gpu`` (the price item), ``usd_per_hour``
    and its ``price_date``, the reference ``job``, its ``hours`` (the study's Table 3 on its 1,535-item fact-checking
    test set on one T4, or the companion study's job) and ``usd`` = hours x the price (None without a job). Runs on
    N GPUs at once (a Ray grid) cost N times the hourly price for 1/N of the hours.
    """
    table3 = study_table3().set_index(["model", "scenario"])
    companion = companion_costs().set_index(["model", "task"])
    rows = []
    for what, command, gpu, job in SCALING_OUT_JOBS:
        row = price_row("gpu_hour", gpu, as_of)
        hours, label = None, ""
        if job is not None:
            source, model, key = job
            if source == "table3":
                hours = float(table3.loc[(model, key), "runtime_hours"])
                label = f"{model} {key} (study Table 3)"
            else:
                hours = float(companion.loc[(model, key), "hours"])
                label = f"{model} on {key} (companion study)"
        rows.append(
            {
                "what": what,
                "command": command,
                "gpu": gpu,
                "usd_per_hour": float(row["usd"]),
                "price_date": pd.Timestamp(row["date"]).date().isoformat(),
                "job": label,
                "hours": hours,
                "usd": None if hours is None else round(hours * float(row["usd"]), 2),
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "DEFAULT_GPU",
    "LISTED_PRICE_MAP",
    "PRICE_KINDS",
    "REGIMES",
    "STUDY_PRICE_MAP",
    "beside_study_table3",
    "companion_claim",
    "adapter_training_seconds",
    "companion_costs",
    "finetune_record",
    "linked_evaluation_runs",
    "scaling_out_costs",
    "cost_table",
    "count_tokens",
    "join_quality",
    "load_prices",
    "pareto_frontier",
    "price",
    "price_item",
    "price_row",
    "run_cost",
    "study_cost_quality",
    "study_table3",
    "study_table3_check",
    "token_counter",
    "training_cost",
]
