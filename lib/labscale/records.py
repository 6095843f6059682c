"""Run records: one folder per (model, task, shots) run, the only thing the book renders from.

Each folder holds

* ``params.json``      what was asked (model string, task, source, shots, limit, seed, decoding, ...)
* ``predictions.jsonl`` one line per item: id, gold target, raw reply, parsed answer, tokens, cache hit
* ``metrics.json``     every metric with its bootstrap 95 % confidence interval
* ``manifest.json``    provenance: package versions, git commit, model id + revision, data source + hash,
  seed, hardware, wall time, tokens, cache hits and the cost fields.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .config import PROJECT_ROOT

FILES = ("params.json", "predictions.jsonl", "metrics.json", "manifest.json")

#: packages whose versions every manifest records
TRACKED_PACKAGES = (
    "labscale",
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "openai",
    "sacrebleu",
    "rouge-score",
    "bert-score",
    "scikit-learn",
    "scipy",
    "numpy",
    "pandas",
)


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The checkout's commit (with ``+dirty`` when tracked files changed), or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = None
    return info


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON atomically (a temporary file renamed into place)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_run(
    run_dir: str | Path,
    *,
    params: dict[str, Any],
    predictions: list[dict[str, Any]],
    metrics: dict[str, Any],
    manifest: dict[str, Any],
) -> Path:
    """Write one run record; the manifest goes last, so a folder with a manifest is a complete record."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").unlink(missing_ok=True)
    write_json(run_dir / "params.json", params)
    with open(run_dir / "predictions.jsonl.tmp", "w") as handle:
        for row in predictions:
            handle.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
    (run_dir / "predictions.jsonl.tmp").replace(run_dir / "predictions.jsonl")
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "manifest.json", {**manifest, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return run_dir


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A complete run record as a dict with keys params, metrics, manifest, predictions (DataFrame), path."""
    run_dir = Path(run_dir)
    record = {
        name.split(".")[0]: json.loads((run_dir / name).read_text())
        for name in ("params.json", "metrics.json", "manifest.json")
    }
    # dtype=False: replies stay text as written ("4" is not 4.0), as do ids and parsed labels
    record["predictions"] = pd.read_json(run_dir / "predictions.jsonl", lines=True, dtype=False, convert_dates=False)
    record["path"] = run_dir
    return record


def find_runs(root: str | Path) -> list[Path]:
    """Every complete run folder under ``root`` (those with a manifest), sorted."""
    return sorted(p.parent for p in Path(root).rglob("manifest.json"))


def metrics_table(root: str | Path) -> pd.DataFrame:
    """One tidy row per (run, metric): model, task, source, shots, scenario ("k-shot" or "fine-tuned"), metric,
    value, ci_low, ci_high, n, interval (the method, :data:`labscale.metrics.INTERVAL_METHODS`), run."""
    rows = []
    for run_dir in find_runs(root):
        params = json.loads((run_dir / "params.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for name, m in metrics.items():
            rows.append(
                {
                    "model": params["model"],
                    "task": params["task"],
                    "source": params["source"],
                    "shots": params["shots"],
                    "scenario": params.get("scenario", f"{params['shots']}-shot"),
                    "metric": name,
                    "value": m["value"],
                    "ci_low": m.get("ci_low"),
                    "ci_high": m.get("ci_high"),
                    "n": m.get("n"),
                    "interval": m.get("interval"),
                    "run": str(run_dir),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "model",
            "task",
            "source",
            "shots",
            "scenario",
            "metric",
            "value",
            "ci_low",
            "ci_high",
            "n",
            "interval",
            "run",
        ],
    )


def read_manifest(run: str | Path) -> dict[str, Any]:
    """The manifest of a record (its folder, or the ``manifest.json`` itself) alone, without the predictions: enough
    to tell what a folder records (``kind``), when (``written_at``) and under which key (``run_key``)."""
    path = Path(run)
    return json.loads((path / "manifest.json" if path.is_dir() else path).read_text())


def find_finetune_manifests(root: str | Path) -> list[Path]:
    """The ``manifest.json`` files under ``root`` that record a fine-tune (``"kind": "finetune"``) rather than an
    evaluation run, sorted; files that cannot be read as a JSON object are skipped."""
    found = []
    for path in sorted(Path(root).rglob("manifest.json")):
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("kind") == "finetune":
            found.append(path)
    return found
