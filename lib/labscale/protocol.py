"""One run protocol for every result: a run specification, a producer, one function that records it.

Learned from HELM's ``RunSpec`` (scenario + adapter + metrics, the run's name derived from the spec) and its
per-instance stats. A :class:`RunSpec` names everything a run's numbers depend on -- the model (a structured
:class:`~labscale.backends.ModelSpec` whose adapter, revision and load options are fields), the task, the data
(source and options), shots, decoding, limit, seed and resamples. :func:`execute` is the only function that
writes a run record: it reuses a complete record made under the same key, otherwise it calls the producer, stamps
the manifest (versions, git commit, hardware, wall time, tokens, cache hits and misses, retries) and writes.

Every producer goes through it: the experiment runner (and with it checkpoint curves, fraction sweeps, DP-SGD
utility and cross-task transfer, which are runner grids), TruthfulQA's log-likelihood scoring, lm-eval and the
leakage audit. The key covers the library's code and the package versions, so a record made by other code is
rebuilt automatically, never silently mixed with new ones.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records
from .backends import Decoding, ModelSpec, slugify
from .config import PROJECT_ROOT


@dataclass(frozen=True)
class RunSpec:
    """What one run computes, and everything its numbers depend on besides the data content and the prompts."""

    #: the producing experiment ("domain_adaptation", "truthfulqa", "generality_lm_eval", "privacy_audit", ...)
    experiment: str
    model: ModelSpec
    task: str
    source: str
    #: "<k>-shot", "fine-tuned" or a producer's own (e.g. "audit")
    scenario: str
    shots: int = 0
    limit: int | None = None
    seed: int = 0
    n_resamples: int = 1000
    #: where and how the data was loaded: data_path, data_seed, split, task_options...
    data: Mapping[str, Any] = field(default_factory=dict)
    decoding: Decoding | None = None
    #: the producer's own settings (prompt template, lm-eval batch size, audit thresholds...)
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: the model's name in tables when it is not the model string's label (e.g. a fine-tuned run's base model)
    label: str | None = None

    @property
    def model_label(self) -> str:
        return self.label or self.model.label

    @property
    def name(self) -> str:
        """The run's folder below an output root: ``<model>/<task>/<k>shot`` (``finetuned`` for an adapter run)."""
        leaf = "finetuned" if self.scenario == "fine-tuned" else f"{self.shots}shot"
        return f"{slugify(self.model_label)}/{self.task}/{leaf}"

    def params(self) -> dict[str, Any]:
        """``params.json``: the specification, flat (the keys tables and comparisons read)."""
        return {
            "experiment": self.experiment,
            "model": self.model_label,
            # the model string less client-side options (timeouts, concurrency), which cannot change an output
            "model_spec": self.model.label,
            "adapter": self.model.adapter,
            "task": self.task,
            "source": self.source,
            "scenario": self.scenario,
            "shots": self.shots,
            "limit": self.limit,
            "seed": self.seed,
            "n_resamples": self.n_resamples,
            **dict(self.data),
            **({"decoding": self.decoding.as_dict()} if self.decoding is not None else {}),
            **dict(self.settings),
        }

    def key(self, identity: Mapping[str, Any], *inputs: Any) -> str:
        """The run key: this specification, the model's identity (weights revision, adapter content hash) and the
        producer's ``inputs`` (item ids, prompts, data hashes), plus the library's code and the package versions."""
        return run_key(self.params(), dict(identity), *inputs)


@dataclass
class Produced:
    """What a producer returns: per-item predictions with their scores, metrics with intervals, and the producer's
    own provenance for the manifest (data provenance, example prompts, lm-eval configuration; ``items`` when not
    every prediction is an item, as with the audit's canary rows).

    Per-item scores are stored once: a task run's under ``scores`` (named by the task's ``item_score_names``);
    lm-eval's, TruthfulQA's (``mc1``, ``mc2``) and the audit's (one column per attack) as the columns their readers
    have always used."""

    predictions: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the backend that generated or scored, for its usage (tokens, cache hits and misses), retries and runtime
    backend: Any = None
    #: package versions beyond :data:`labscale.records.TRACKED_PACKAGES` (e.g. lm_eval)
    versions: dict[str, str | None] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the library's source: a change to a prompt, parser or metric invalidates reused records."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")) + sorted((root / "reference").glob("*")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_key(*parts: Any) -> str:
    """SHA-256 of ``parts`` plus the library's code and the package versions."""
    payload = json.dumps([*parts, code_fingerprint(), records.package_versions()], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def is_current(run_dir: str | Path, key: str) -> bool:
    """Whether ``run_dir`` holds a complete record (its manifest is written last) made under ``key``."""
    return (Path(run_dir) / "manifest.json").is_file() and records.read_manifest(run_dir).get("run_key") == key


def _usage(backend: Any) -> dict[str, Any]:
    """Tokens, requests, cache hits and misses, retries and runtime of the backend that produced a run."""
    if backend is None:
        return {}
    stats = backend.stats.as_dict()
    stamped: dict[str, Any] = {
        "usage": stats,
        "cache_hit_rate": stats["cache_hits"] / max(stats["requests"], 1),
    }
    retries = backend.retry_record()
    if retries is not None:  # API backends: the client's retries in this run, by cause
        stamped["retries"] = retries
    return stamped


def execute(
    spec: RunSpec,
    run_dir: str | Path,
    produce: Callable[[], Produced],
    *,
    identity: Mapping[str, Any],
    inputs: Sequence[Any] = (),
    reuse: bool = True,
) -> Path:
    """Run ``spec`` into ``run_dir``: reuse a complete record made under the same key, else call ``produce``,
    stamp the manifest and write the record. The only function in the library that writes run records."""
    run_dir = Path(run_dir)
    key = spec.key(identity, *inputs)
    if reuse and is_current(run_dir, key):
        return run_dir  # an identical, complete record (same spec, model, inputs, code, versions) exists
    start = time.perf_counter()
    produced = produce()
    wall = time.perf_counter() - start
    backend = produced.backend
    runtime = backend.runtime_info() if backend is not None else {}
    manifest = {
        "run_key": key,
        "model": {"spec": spec.model.text, **dict(identity)},
        "items": len(produced.predictions),
        "seed": spec.seed,
        **_usage(backend),
        **produced.provenance,  # the producer's own (it may count items or usage its own way)
        "versions": {**records.package_versions(), **produced.versions},
        "git_commit": records.git_commit(PROJECT_ROOT),
        "hardware": {**records.hardware(), **runtime},
        "wall_seconds": round(wall, 3),
    }
    return records.write_run(
        run_dir, params=spec.params(), predictions=produced.predictions, metrics=produced.metrics, manifest=manifest
    )


__all__ = ["Produced", "RunSpec", "code_fingerprint", "execute", "is_current", "run_key"]
