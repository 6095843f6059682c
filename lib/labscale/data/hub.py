"""Loading the study's Hugging Face datasets, with one clear error when they cannot be had (offline, no cache)."""

from __future__ import annotations

import os

from ..errors import DataUnavailable


def load_hub_dataset(dataset_id: str, revision: str | None = None):
    """``datasets.load_dataset(dataset_id, revision=revision)``; :class:`DataUnavailable` naming the way out."""
    try:
        import datasets

        return datasets.load_dataset(dataset_id, revision=revision)
    except Exception as exc:  # offline mode, network, missing cache, gated repo...
        offline = any(
            os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
            for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
        )
        why = " (Hugging Face offline mode is on and the dataset is not in the local cache)" if offline else ""
        pinned = f" at revision {revision!r}" if revision else ""
        raise DataUnavailable(
            f"source 'hub' could not load the Hugging Face dataset {dataset_id!r}{pinned}{why}: "
            f"{type(exc).__name__}: {str(exc)[:300]}. Use source='offline' (generated data, no download) or "
            "source='local' (the original release files in the data folder named by LABSCALE_DATA, "
            "or data_path=...)."
        ) from exc
