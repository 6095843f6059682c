"""Fine-tuning GPT-3.5-Turbo through the OpenAI fine-tuning API: the study's closed-model "fine-tuned" regime.

The study (§3, §5.2) tuned ``gpt-3.5-turbo-0613`` for one epoch (``n_epochs=1``; OpenAI's default is 3) with
otherwise default hyperparameters, then evaluated the tuned model zero-shot. This module does the same in three
steps::

    path, n, stats = build_jsonl("fact_checking", data, path="fc_train.jsonl")   # training file
    result = start_job("gpt-3.5-turbo", path, n_epochs=1)                      # upload, create, poll
    result.model_string   # 'openai:ft:gpt-3.5-turbo-0613:org::abc123' -> evaluate with the OpenAI backend

Differences from the original scripts (original-code.md §3, §6 item 11):

* **Same prompt in training and evaluation.** Each training line is exactly the zero-shot conversation that
  evaluation sends (system message, instruction and input: :meth:`Task.messages` with no shots) followed by the
  target as the assistant turn. The original fact-checking fine-tune trained on the bare "Claim ... Evidence
  ..." text and evaluated *with* the instruction, a train/test prompt mismatch.
* **Polling** backs off exponentially (``poll_interval`` doubling up to ``max_interval``) instead of a fixed
  60 s, and gives up after ``max_wait`` with :class:`FineTuneTimeout`; the job keeps running on OpenAI's side.
* **A job record** (JSON, never the key) is written after the job is created and after every poll, to
  ``<record_dir>/<job_id>/finetune.json`` (default ``<LABSCALE_HOME>/finetune_jobs``). An interrupted poll
  resumes with :func:`resume_job` instead of paying for a second job, and :func:`start_job` refuses to start
  a second job for the same training file, base model and hyperparameters while an earlier one has not failed
  (``force=True`` overrides). The record is also a fine-tuning record for :func:`labscale.cost.cost_table`.
* **No duplicate job on a flaky network.** The job-creation request is not retried blindly (the ``openai``
  client sends no idempotency key); after a timeout or a 5xx the recent jobs are listed first and a job already
  created for the uploaded file is adopted.
* **The key** is read from the environment variable named by ``api_key_env`` only, is required before any
  request is made, and never appears in the record, the result, logs or error messages (errors pass through
  :func:`labscale.backends.openai_api.scrub`).

``hyperparameters={"n_epochs": ...}`` is sent as the study sent it; OpenAI now documents it as deprecated in
favour of ``method``, but it is still accepted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .backends.openai_api import (
    DEFAULT_API_KEY_ENV,
    OPENAI_BASE_URL,
    check_env_name,
    is_official_openai,
    normalize_base_url,
    scrub,
)
from .errors import InvalidParameter, LabscaleError, check_range
from .records import write_json

logger = logging.getLogger(__name__)

#: statuses after which a job never changes
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
#: OpenAI refuses training files with fewer examples
MIN_EXAMPLES = 10
RECORD_NAME = "finetune.json"
DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_MAX_INTERVAL = 300.0
DEFAULT_MAX_WAIT = 12 * 3600.0
_JOB_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
#: the pause between polls (a module attribute so tests can replace it)
_sleep = time.sleep


class FineTuneError(LabscaleError, RuntimeError):
    """A fine-tuning job that failed or was cancelled (the message carries the job's own error)."""

    def __init__(self, message: str, result: FineTuneJobResult | None = None):
        super().__init__(message)
        self.result = result


class FineTuneTimeout(LabscaleError, TimeoutError):
    """The job was still running after ``max_wait``; follow it with :func:`resume_job` (it is not cancelled)."""

    def __init__(self, message: str, job_id: str, record_path: Path):
        super().__init__(message)
        self.job_id = job_id
        self.record_path = record_path


# -- the training file -----------------------------------------------------------------------------------
def build_jsonl(
    task: Any,
    data: Any,
    split: str = "train",
    *,
    train_fraction: float = 1.0,
    seed: int = 0,
    path: str | Path | None = None,
    token_model: str = "gpt-3.5-turbo-0613",
) -> tuple[Path | str, int, dict[str, Any]]:
    """OpenAI chat fine-tuning data for ``task`` on ``split`` of ``data``: one line per example,
    ``{"messages": [system?, user, assistant]}``.

    The user turn is the zero-shot prompt evaluation sends (``task.messages(example, [])``) and the assistant
    turn is ``task.format_target(example)``. ``task`` is a :class:`~labscale.tasks.Task` or its name; ``data``
    a :class:`~labscale.tasks.TaskData` or a source name to load. ``train_fraction < 1`` keeps a seeded sample
    of that share of the split, in dataset order (the study's GPT-3.5 data-size sweep used separate jobs on
    subsets). Returns ``(path, n_examples, stats)`` when ``path`` is given (the file is written), else
    ``(text, n_examples, stats)``. ``stats`` records the provenance, the file's SHA-256 and an offline estimate
    of its tokens (billed training tokens are about this x ``n_epochs``).
    """
    from .core import sample_examples
    from .cost import count_tokens
    from .tasks import Task, TaskData, get_task

    task = get_task(task) if isinstance(task, str) else task
    if not isinstance(task, Task):
        raise InvalidParameter(f"task must be a Task or a task name, got {type(task).__name__}")
    if isinstance(data, str):
        data = task.load(data)
    if not isinstance(data, TaskData):
        raise InvalidParameter(f"data must be TaskData or a source name, got {type(data).__name__}")
    check_range("train_fraction", train_fraction, 0.0, 1.0)
    if train_fraction <= 0:
        raise InvalidParameter("train_fraction must be above 0")
    examples = data.split(split)
    if not examples:
        raise InvalidParameter(f"split {split!r} of {task.name} ({data.source}) has no examples")
    n_keep = max(1, round(len(examples) * train_fraction))
    chosen = sample_examples(examples, n_keep if n_keep < len(examples) else None, seed)

    conversations = [
        task.messages(ex, []) + [{"role": "assistant", "content": task.format_target(ex)}] for ex in chosen
    ]
    text = "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations)
    tokens, method = count_tokens(conversations, token_model)
    stats = {
        "task": task.name,
        "source": data.source,
        "origin": data.origin,
        "synthetic": data.synthetic,
        "data_sha256": data.content_hash,
        "split": split,
        "n_available": len(examples),
        "n_examples": len(chosen),
        "train_fraction": train_fraction,
        "seed": seed,
        "example_ids": [ex.id for ex in chosen][:5] + (["..."] if len(chosen) > 5 else []),
        "prompt": "zero-shot evaluation prompt (system message, instruction and input) + target",
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "bytes": len(text.encode()),
        "estimated_tokens": tokens,
        "token_method": method,
    }
    if path is None:
        return text, len(chosen), stats
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    stats["path"] = str(out)
    return out, len(chosen), stats


def check_jsonl(path: str | Path, *, minimum: int = MIN_EXAMPLES) -> tuple[int, str]:
    """Validate a chat fine-tuning file offline; returns ``(n_examples, sha256)``.

    Each non-empty line must be a JSON object whose ``messages`` list ends with an assistant turn; OpenAI also
    requires at least ``minimum`` (10) examples. Raises :class:`InvalidParameter` naming the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameter(f"training file {str(path)!r} does not exist")
    raw = path.read_bytes()
    n = 0
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InvalidParameter(f"{path.name} line {number} is not JSON") from None
        messages = row.get("messages") if isinstance(row, dict) else None
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict)
                and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            raise InvalidParameter(f"{path.name} line {number} has no valid 'messages' list of role/content turns")
        if messages[-1]["role"] != "assistant":
            raise InvalidParameter(f"{path.name} line {number} does not end with an assistant turn (the target)")
        n += 1
    if n < minimum:
        raise InvalidParameter(f"{path.name} holds {n} examples; OpenAI fine-tuning needs at least {minimum}")
    return n, hashlib.sha256(raw).hexdigest()


# -- the result and its record ---------------------------------------------------------------------------
@dataclass
class FineTuneJobResult:
    """What a fine-tuning job produced; the API key is never part of it."""

    job_id: str
    status: str
    base_model: str
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    n_epochs: int | None = None
    suffix: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    base_url: str = OPENAI_BASE_URL
    api_key_env: str = DEFAULT_API_KEY_ENV
    task: str | None = None
    created_at: int | None = None
    finished_at: int | None = None
    wall_seconds: float | None = None
    wall_seconds_source: str | None = None
    polls: int = 0
    error: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    training_sha256: str | None = None
    n_examples: int | None = None
    record_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def model_string(self) -> str | None:
        """The model string that evaluates the tuned model with the OpenAI backend (None until it exists)."""
        if not self.fine_tuned_model:
            return None
        return model_string(self.fine_tuned_model, self.base_url, self.api_key_env)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_string": self.model_string}


def model_string(model_id: str, base_url: str = OPENAI_BASE_URL, api_key_env: str = DEFAULT_API_KEY_ENV) -> str:
    """``openai:<model_id>`` plus the options that differ from the defaults."""
    options = []
    if not is_official_openai(normalize_base_url(base_url)):
        options.append(f"base_url={base_url}")
    if api_key_env != DEFAULT_API_KEY_ENV:
        options.append(f"api_key_env={api_key_env}")
    return f"openai:{model_id}" + (f"?{'&'.join(options)}" if options else "")


def default_record_dir() -> Path:
    return config.home() / "finetune_jobs"


def record_path(job_id: str, record_dir: str | Path | None = None) -> Path:
    """Where the record of ``job_id`` lives: ``<record_dir>/<job_id>/finetune.json``."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InvalidParameter(f"job id must be letters, digits, '-' or '_' (e.g. ftjob-abc123), got {job_id!r}")
    return Path(record_dir if record_dir is not None else default_record_dir()) / job_id / RECORD_NAME


def load_job_record(job_id: str, record_dir: str | Path | None = None) -> dict[str, Any]:
    """The saved record of ``job_id``; :class:`InvalidParameter` when there is none."""
    path = record_path(job_id, record_dir)
    if not path.is_file():
        raise InvalidParameter(f"no record of fine-tuning job {job_id!r} at {str(path)!r}")
    return json.loads(path.read_text())


def _result_from(record: dict[str, Any]) -> FineTuneJobResult:
    names = FineTuneJobResult.__dataclass_fields__
    return FineTuneJobResult(**{k: v for k, v in record.items() if k in names})


def _save(record: dict[str, Any], path: Path, secrets: Sequence[str]) -> None:
    record["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["model_string"] = (
        model_string(record["fine_tuned_model"], record["base_url"], record["api_key_env"])
        if record.get("fine_tuned_model")
        else None
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Belt and braces: the record holds no key by construction; anything key-shaped is scrubbed anyway.
    clean = json.loads(scrub(json.dumps(record, default=str), secrets))
    write_json(path, clean)


# -- talking to the API ----------------------------------------------------------------------------------
def _resolve_model(model: str) -> tuple[str, dict[str, Any]]:
    """(base model id, spec options) from ``gpt-3.5-turbo``, ``openai:gpt-3.5-turbo-0613?...`` or a bare id."""
    from .backends import ALIASES, parse_model_spec

    if not isinstance(model, str) or not model.strip():
        raise InvalidParameter(f"model must be a non-empty string, got {model!r}")
    model = model.strip()
    is_spec = model.split("@")[0] in ALIASES or (re.match(r"^[a-z]+:", model) and not model.startswith("ft:"))
    if is_spec:
        spec = parse_model_spec(model)
        if spec.backend != "openai":
            raise InvalidParameter(
                f"fine-tuning through the OpenAI API needs an OpenAI model, got {model!r} "
                f"(backend {spec.backend!r}); tune local models with qLoRA instead"
            )
        return spec.model, dict(spec.options)
    if re.search(r"[\s?&]", model):
        raise InvalidParameter(f"model {model!r} is not a model id")
    return model, {}


def _api_key(api_key_env: str) -> str:
    check_env_name(api_key_env)
    key = os.environ.get(api_key_env) or ""
    if not key:
        raise InvalidParameter(
            f"no API key: OpenAI fine-tuning needs the environment variable {api_key_env} "
            f"(or name another with api_key_env=...); nothing was sent"
        )
    return key


def _client(key: str, base_url: str, http_client: Any, max_retries: int, timeout: float):
    import openai

    return openai.OpenAI(
        api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout, http_client=http_client
    )


def _describe(error: BaseException, secrets: Sequence[str]) -> str:
    status = getattr(error, "status_code", None)
    return scrub(f"{type(error).__name__}" + (f" (HTTP {status})" if status else "") + f": {error}", secrets)[:500]


def _call(what: str, fn: Callable[[], Any], secrets: Sequence[str]) -> Any:
    import openai

    try:
        return fn()
    except openai.OpenAIError as error:
        raise RuntimeError(f"{what} failed: {_describe(error, secrets)}") from None


def _job_fields(job: Any) -> dict[str, Any]:
    error = getattr(job, "error", None)
    error_dict = None
    if error is not None and (getattr(error, "message", None) or getattr(error, "code", None)):
        error_dict = {
            "code": getattr(error, "code", None),
            "message": getattr(error, "message", None),
            "param": getattr(error, "param", None),
        }
    hyper = getattr(job, "hyperparameters", None)
    return {
        "status": job.status,
        "fine_tuned_model": getattr(job, "fine_tuned_model", None),
        "trained_tokens": getattr(job, "trained_tokens", None),
        "created_at": getattr(job, "created_at", None),
        "finished_at": getattr(job, "finished_at", None),
        "estimated_finish": getattr(job, "estimated_finish", None),
        "error": error_dict,
        "hyperparameters": hyper.model_dump() if hasattr(hyper, "model_dump") else hyper,
        "response_model": getattr(job, "model", None),
    }


def _find_created_job(client: Any, training_file: str) -> Any:
    """A job already created for ``training_file`` (after an ambiguous create failure), else None."""
    try:
        page = client.fine_tuning.jobs.list(limit=20)
    except Exception:  # noqa: BLE001 - best effort; the caller retries the create
        return None
    for job in getattr(page, "data", []) or []:
        if getattr(job, "training_file", None) == training_file and job.status not in ("failed", "cancelled"):
            return job
    return None


def _create_job(
    client: Any, params: dict[str, Any], *, attempts: int, delay: float, max_delay: float, secrets: Sequence[str]
) -> Any:
    import openai

    creator = client.with_options(max_retries=0).fine_tuning.jobs
    for attempt in range(attempts + 1):
        try:
            return creator.create(**params)
        except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as error:
            existing = _find_created_job(client, params["training_file"])
            if existing is not None:
                logger.info(
                    "job creation reported %s but job %s exists for the file; following it",
                    type(error).__name__,
                    existing.id,
                )
                return existing
            if attempt == attempts:
                raise RuntimeError(
                    f"creating the fine-tuning job failed after {attempts + 1} attempts: {_describe(error, secrets)}"
                ) from None
            _sleep(min(delay * 2**attempt, max_delay))
        except openai.OpenAIError as error:
            raise RuntimeError(f"creating the fine-tuning job failed: {_describe(error, secrets)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _events(client: Any, job_id: str, secrets: Sequence[str]) -> list[dict[str, Any]] | None:
    try:
        page = client.fine_tuning.jobs.list_events(job_id, limit=100)
    except Exception:  # noqa: BLE001 - events are a nicety; a job's outcome does not depend on them
        return None
    return [
        {
            "created_at": getattr(e, "created_at", None),
            "level": getattr(e, "level", None),
            "message": scrub(str(getattr(e, "message", "")), secrets),
        }
        for e in getattr(page, "data", []) or []
    ]


def _poll(
    client: Any,
    record: dict[str, Any],
    path: Path,
    *,
    poll_interval: float,
    max_interval: float,
    max_wait: float,
    fetch_events: bool,
    secrets: Sequence[str],
) -> FineTuneJobResult:
    job_id = record["job_id"]
    record["record_path"] = str(path)
    start = time.monotonic()
    interval = poll_interval
    while True:
        job = _call(f"polling fine-tuning job {job_id}", lambda: client.fine_tuning.jobs.retrieve(job_id), secrets)
        fields = _job_fields(job)
        if fields["status"] != record.get("status"):
            logger.info("fine-tuning job %s: %s", job_id, fields["status"])
        record.update({k: v for k, v in fields.items() if v is not None or k in ("error",)})
        record["polls"] = int(record.get("polls") or 0) + 1
        record["last_polled_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if record["status"] in TERMINAL_STATUSES:
            break
        _save(record, path, secrets)
        elapsed = time.monotonic() - start
        if elapsed >= max_wait:
            raise FineTuneTimeout(
                f"fine-tuning job {job_id} is still {record['status']!r} after {elapsed:.0f} s of polling; it keeps "
                f"running on the server. Follow it with resume_job({job_id!r}, record_dir=...) (record: {path})",
                job_id,
                path,
            )
        _sleep(min(interval, max(max_wait - elapsed, 0.0)))
        interval = min(interval * 2, max_interval)

    if record.get("created_at") and record.get("finished_at"):
        record["wall_seconds"] = float(record["finished_at"]) - float(record["created_at"])
        record["wall_seconds_source"] = "API timestamps (created_at to finished_at: queue + training)"
    else:
        record["wall_seconds"] = time.time() - float(record.get("submitted_epoch") or time.time())
        record["wall_seconds_source"] = "local clock (submission to the poll that saw the final status)"
    if fetch_events:
        record["events"] = _events(client, job_id, secrets)
    _save(record, path, secrets)
    result = _result_from(record)
    if record["status"] != "succeeded":
        error = record.get("error") or {}
        detail = (
            (
                f"{error.get('code') or 'error'}: {error.get('message') or 'no message'}"
                + (f" (param {error['param']})" if error.get("param") else "")
            )
            if error
            else "no error given"
        )
        raise FineTuneError(scrub(f"fine-tuning job {job_id} {record['status']}: {detail}", secrets), result)
    return result


def _check_polling(poll_interval: float, max_interval: float, max_wait: float) -> None:
    check_range("poll_interval", poll_interval, 0.0, 3600.0)
    check_range("max_interval", max_interval, poll_interval, 24 * 3600.0)
    check_range("max_wait", max_wait, 0.0, 30 * 24 * 3600.0)


def _existing_jobs(record_dir: Path, match: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for path in sorted(record_dir.glob(f"*/{RECORD_NAME}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if all(record.get(k) == v for k, v in match.items()) and record.get("status") not in ("failed", "cancelled"):
            found.append(record)
    return found


def start_job(
    model: str,
    jsonl_path: str | Path,
    *,
    n_epochs: int = 1,
    suffix: str | None = None,
    validation_path: str | Path | None = None,
    api_key_env: str | None = None,
    base_url: str | None = None,
    http_client: Any = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    max_interval: float = DEFAULT_MAX_INTERVAL,
    max_wait: float = DEFAULT_MAX_WAIT,
    record_dir: str | Path | None = None,
    task: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_retries: int = 6,
    timeout: float = 120.0,
    fetch_events: bool = True,
    force: bool = False,
) -> FineTuneJobResult:
    """Upload ``jsonl_path``, create a fine-tuning job of ``model`` and poll it to the end.

    ``model`` is a base model id (``gpt-3.5-turbo-0613``), an alias (``gpt-3.5-turbo``) or an ``openai:`` model
    string whose ``base_url`` / ``api_key_env`` options are used unless given here. ``n_epochs`` is sent as
    ``hyperparameters={"n_epochs": n_epochs}`` (the study: 1). Everything is validated, and the key looked up in
    ``api_key_env`` (default ``OPENAI_API_KEY``), before the first request; a missing key raises
    :class:`InvalidParameter`. Polls back off from ``poll_interval`` doubling to ``max_interval``; after
    ``max_wait`` seconds :class:`FineTuneTimeout` is raised and :func:`resume_job` picks the job up again. A
    failed or cancelled job raises :class:`FineTuneError` with the job's error message. The job record is kept
    at ``<record_dir>/<job_id>/finetune.json``.
    """
    check_range("n_epochs", n_epochs, 1, 50, integer=True)
    if suffix is not None and (not isinstance(suffix, str) or not re.match(r"^[A-Za-z0-9_\-]{1,64}$", suffix)):
        raise InvalidParameter(f"suffix must be 1-64 letters, digits, '-' or '_', got {suffix!r}")
    _check_polling(poll_interval, max_interval, max_wait)
    check_range("max_retries", max_retries, 0, 100, integer=True)
    check_range("timeout", timeout, 0.001, 3600)
    base_model, options = _resolve_model(model)
    api_key_env = api_key_env or options.get("api_key_env") or DEFAULT_API_KEY_ENV
    key = _api_key(api_key_env)
    url = normalize_base_url(
        base_url or options.get("base_url") or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
    )
    n_examples, sha = check_jsonl(jsonl_path)
    validation = None
    if validation_path is not None:
        validation = check_jsonl(validation_path, minimum=1)
    folder = Path(record_dir) if record_dir is not None else default_record_dir()
    match = {"training_sha256": sha, "base_model": base_model, "n_epochs": n_epochs, "suffix": suffix, "base_url": url}
    earlier = _existing_jobs(folder, match)
    if earlier and not force:
        job = earlier[-1]
        raise InvalidParameter(
            f"a fine-tuning job for this training file, model and n_epochs already exists: {job['job_id']} "
            f"(status {job.get('status')!r}). Follow it with resume_job({job['job_id']!r}) or pass force=True to "
            f"pay for another"
        )
    if not is_official_openai(url):
        logger.info("fine-tuning against %s (not api.openai.com)", url)

    secrets = [key]
    client = _client(key, url, http_client, max_retries, timeout)
    training_path = Path(jsonl_path)
    uploaded = _call(
        "uploading the training file",
        lambda: client.files.create(
            file=(training_path.name, training_path.read_bytes(), "application/jsonl"), purpose="fine-tune"
        ),
        secrets,
    )
    validation_id = None
    if validation_path is not None:
        vpath = Path(validation_path)
        validation_id = _call(
            "uploading the validation file",
            lambda: client.files.create(
                file=(vpath.name, vpath.read_bytes(), "application/jsonl"), purpose="fine-tune"
            ),
            secrets,
        ).id
    params: dict[str, Any] = {
        "model": base_model,
        "training_file": uploaded.id,
        "hyperparameters": {"n_epochs": n_epochs},
    }
    if validation_id:
        params["validation_file"] = validation_id
    if suffix:
        params["suffix"] = suffix
    submitted = time.time()
    job = _create_job(
        client, params, attempts=max_retries, delay=max(poll_interval, 0.001), max_delay=max_interval, secrets=secrets
    )
    path = record_path(job.id, folder)
    record: dict[str, Any] = {
        "kind": "finetune",
        "backend": "openai",
        "job_id": job.id,
        "base_model": base_model,
        "n_epochs": n_epochs,
        "suffix": suffix,
        "training_file": uploaded.id,
        "validation_file": validation_id,
        "training_path": str(training_path),
        "training_sha256": sha,
        "n_examples": n_examples,
        "validation_path": str(validation_path) if validation_path is not None else None,
        "validation_sha256": validation[1] if validation else None,
        "base_url": url,
        "api_key_env": api_key_env,
        "task": task,
        "metadata": dict(metadata or {}),
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "submitted_epoch": submitted,
        "polls": 0,
        "events": None,
        "record_path": str(path),
    }
    record.update({k: v for k, v in _job_fields(job).items() if v is not None})
    _save(record, path, secrets)
    logger.info(
        "fine-tuning job %s created for %s (%d examples, n_epochs=%d)", job.id, base_model, n_examples, n_epochs
    )
    try:
        return _poll(
            client,
            record,
            path,
            poll_interval=poll_interval,
            max_interval=max_interval,
            max_wait=max_wait,
            fetch_events=fetch_events,
            secrets=secrets,
        )
    finally:
        if http_client is None:
            client.close()


def resume_job(
    job_id: str,
    *,
    record_dir: str | Path | None = None,
    api_key_env: str | None = None,
    base_url: str | None = None,
    http_client: Any = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    max_interval: float = DEFAULT_MAX_INTERVAL,
    max_wait: float = DEFAULT_MAX_WAIT,
    max_retries: int = 6,
    timeout: float = 120.0,
    fetch_events: bool = True,
) -> FineTuneJobResult:
    """Keep polling an existing job (after :class:`FineTuneTimeout` or an interrupted session): no upload and
    no new job. The saved record supplies ``base_url`` and ``api_key_env`` unless given; without a record one
    is started from what the API reports."""
    path = record_path(job_id, record_dir)
    _check_polling(poll_interval, max_interval, max_wait)
    record = (
        json.loads(path.read_text())
        if path.is_file()
        else {
            "kind": "finetune",
            "backend": "openai",
            "job_id": job_id,
            "polls": 0,
            "events": None,
            "metadata": {},
            "note": "record started by resume_job; upload details unknown",
        }
    )
    api_key_env = api_key_env or record.get("api_key_env") or DEFAULT_API_KEY_ENV
    key = _api_key(api_key_env)
    url = normalize_base_url(base_url or record.get("base_url") or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL)
    record.update(api_key_env=api_key_env, base_url=url)
    client = _client(key, url, http_client, max_retries, timeout)
    try:
        if "base_model" not in record:
            job = _call(f"looking up fine-tuning job {job_id}", lambda: client.fine_tuning.jobs.retrieve(job_id), [key])
            record["base_model"] = job.model
            record["training_file"] = getattr(job, "training_file", None)
            record["n_epochs"] = getattr(getattr(job, "hyperparameters", None), "n_epochs", None)
        return _poll(
            client,
            record,
            path,
            poll_interval=poll_interval,
            max_interval=max_interval,
            max_wait=max_wait,
            fetch_events=fetch_events,
            secrets=[key],
        )
    finally:
        if http_client is None:
            client.close()


__all__ = [
    "MIN_EXAMPLES",
    "TERMINAL_STATUSES",
    "FineTuneError",
    "FineTuneJobResult",
    "FineTuneTimeout",
    "build_jsonl",
    "check_jsonl",
    "default_record_dir",
    "load_job_record",
    "model_string",
    "record_path",
    "resume_job",
    "start_job",
]
