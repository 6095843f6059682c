"""Shared fixtures: offline Hugging Face, an isolated labscale home, the embedded model, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: the tests' and CI's copy of the release files, laid beside the checkout as ../shared/data; the tests fetch
#: through the data registry with it as the mirror (the product itself never assumes the folder exists)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "LABSCALE_DATA_MIRROR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LABSCALE_DATA_MIRROR"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2 converted to a Hugging Face folder (converted once, reused from LABSCALE_HOME)."""
    from labscale.backends import embedded

    return embedded.ensure_converted()


@pytest.fixture(scope="module")
def server(embedded_model_dir, tmp_path_factory):
    """A real ``transformers serve`` of the embedded model on 127.0.0.1, one per test module."""
    from local_server import LocalServer

    with LocalServer(embedded_model_dir, tmp_path_factory.mktemp("transformers-serve")) as local:
        yield local


@pytest.fixture()
def cache(tmp_path):
    """A fresh response cache in a temporary folder."""
    from labscale.cache import ResponseCache

    store = ResponseCache(tmp_path / "responses.sqlite")
    yield store
    store.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real release files, laid out ``<dataset>/<path>``: every registry dataset fetched into the data cache
    (``<LABSCALE_HOME>/data``, copied from LABSCALE_DATA_MIRROR once, sha256 checked every session). Skips, with the
    fix, when they cannot be had (no mirror, no cache, offline); a changed cached file is an error."""
    from labscale.data import registry

    try:
        return registry.fetch_all()
    except registry.DataMissing as exc:
        if SHARED_DATA.is_dir():  # CI and this project's machines have the mirror: a miss there is a failure
            raise
        pytest.skip(f"release files unavailable: {exc}")
