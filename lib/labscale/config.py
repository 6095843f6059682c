"""Where things live: the cache home, the response cache, converted models and the release-data folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    """Root for everything labscale writes outside a run folder (``$LABSCALE_HOME``, default ``~/.cache/labscale``)."""
    path = Path(os.environ.get("LABSCALE_HOME", Path.home() / ".cache" / "labscale")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_path() -> Path:
    """The SQLite response cache (``$LABSCALE_CACHE``, default ``<home>/responses.sqlite``)."""
    return Path(os.environ.get("LABSCALE_CACHE", home() / "responses.sqlite")).expanduser()


def models_dir() -> Path:
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_offline(offline: bool = True) -> None:
    """Tell the Hugging Face libraries not to reach the hub (they otherwise retry for tens of seconds)."""
    value = "1" if offline else "0"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = value
