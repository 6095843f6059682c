"""Content hashes for provenance: data files, model weights and adapters (streamed, so large files are fine)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def _update(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | Path]) -> str:
    """SHA-256 over several files (sorted by path), each contributing its name and bytes."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        _update(digest, path)
    return digest.hexdigest()
