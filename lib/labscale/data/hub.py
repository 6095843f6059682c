"""Loading the study's Hugging Face datasets, with one clear error when they cannot be had (offline, no cache).

Every hub loader goes through :func:`load_hub_splits` (the dataset's splits, renamed to ours and converted one by
one) or, for a dataset published as release files, :func:`download_hub_file`; both raise
:class:`~labscale.errors.DataUnavailable` naming the way out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DataUnavailable

T = TypeVar("T")

#: hub split names that mean one of ours
SPLIT_ALIASES = {"dev": "validation", "valid": "validation"}

_WAY_OUT = (
    "Use source='offline' (generated data, no download) or source='local' (the original release files in the "
    "data folder named by LABSCALE_DATA, or data_path=...)."
)


def _offline_mode() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def load_hub_dataset(dataset_id: str, revision: str | None = None, *, config: str | None = None):
    """``datasets.load_dataset(dataset_id, config, revision=revision)``; :class:`DataUnavailable` naming the way
    out."""
    try:
        import datasets

        if config is None:
            return datasets.load_dataset(dataset_id, revision=revision)
        return datasets.load_dataset(dataset_id, config, revision=revision)
    except Exception as exc:  # offline mode, network, missing cache, gated repo...
        why = " (Hugging Face offline mode is on and the dataset is not in the local cache)" if _offline_mode() else ""
        pinned = f" at revision {revision!r}" if revision else ""
        named = f" ({config})" if config else ""
        raise DataUnavailable(
            f"source 'hub' could not load the Hugging Face dataset {dataset_id!r}{named}{pinned}{why}: "
            f"{type(exc).__name__}: {str(exc)[:300]}. {_WAY_OUT}"
        ) from exc


def load_hub_splits(
    dataset_id: str,
    revision: str | None,
    convert: Callable[[str, Any], T],
    splits: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
) -> dict[str, T]:
    """The hub loaders' split loop: load ``dataset_id`` at ``revision`` and return ``{our split: convert(our split,
    hub split)}`` for each hub split of ``splits`` (hub name -> ours) the dataset has, in that order; ``splits=None``
    takes every split the dataset has, renamed by :data:`SPLIT_ALIASES` (dev/valid -> validation); ``config`` names
    the dataset's configuration, if it has several. :class:`DataUnavailable` when the dataset cannot be had or has
    none of the splits asked for."""
    dataset = load_hub_dataset(dataset_id, revision, config=config)
    names = dict(splits) if splits is not None else {name: SPLIT_ALIASES.get(name, name) for name in dataset}
    out = {ours: convert(ours, dataset[hub]) for hub, ours in names.items() if hub in dataset}
    if not out:
        raise DataUnavailable(
            f"the Hugging Face dataset {dataset_id!r} has none of the splits {tuple(names)}; found {list(dataset)}"
        )
    return out


def download_hub_file(dataset_id: str, filename: str, revision: str | None = None, *, way_out: str = _WAY_OUT) -> Path:
    """One file of a hub dataset repository (``huggingface_hub.hf_hub_download``), with the same error as
    :func:`load_hub_dataset` when it cannot be had; ``way_out`` is the advice that ends the message."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(dataset_id, filename, repo_type="dataset", revision=revision))
    except Exception as exc:  # offline mode, network, missing cache
        why = " (Hugging Face offline mode is on and the file is not in the local cache)" if _offline_mode() else ""
        raise DataUnavailable(
            f"source 'hub' could not fetch {filename} from {dataset_id!r}{why}: {type(exc).__name__}: "
            f"{str(exc)[:300]}. {way_out}"
        ) from exc
