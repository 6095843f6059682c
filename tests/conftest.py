"""Shared fixtures: offline Hugging Face, an isolated labscale home, the embedded model, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2 converted to a Hugging Face folder (converted once, reused from LABSCALE_HOME)."""
    from labscale.backends import embedded

    return embedded.ensure_converted()


@pytest.fixture()
def cache(tmp_path):
    """A fresh response cache in a temporary folder."""
    from labscale.cache import ResponseCache

    store = ResponseCache(tmp_path / "responses.sqlite")
    yield store
    store.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real release files in ../shared/data (skips when this checkout has no shared folder beside it)."""
    from labscale.config import shared_data_dir

    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is not present beside this checkout (set LABSCALE_DATA)")
    return path
