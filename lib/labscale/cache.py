"""A persistent response cache for every generation, in SQLite.

The key is the SHA-256 of a canonical JSON document holding the backend, base URL, model id and revision,
output-affecting load options (adapter, quantization), the full messages, every decoding parameter that can
change the output (under greedy decoding the sampling-only ``seed`` and ``top_p`` take fixed values, see
:meth:`labscale.backends.base.Decoding.cache_dict`) and the sample index. Each response is committed as soon as it
arrives (WAL journal), so a run killed midway resumes from the cache without repeating paid calls, and rerunning a
finished notebook makes no model or API call. API keys are never part of a request document, so they never reach
the cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    extra TEXT
)
"""


def request_key(request: dict[str, Any]) -> str:
    """The cache key of a request document: SHA-256 of its canonical (sorted, compact) JSON."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CachedResponse:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    extra: dict[str, Any]
    created: float


#: seconds a connection waits for another process's lock (and opening retries), before giving up
OPEN_TIMEOUT = 60


class ResponseCache:
    """SQLite-backed response store, safe to share between threads of one process and between processes."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else config.cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=OPEN_TIMEOUT)
        self._open()

    def _open(self) -> None:
        """Switch the file to WAL and create the table. Processes opening one new file at once (chapters built in
        parallel) can get "database is locked" here at once, without SQLite's busy wait (the journal-mode change
        takes its lock without the busy handler), so this retries until :data:`OPEN_TIMEOUT`."""
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute(_SCHEMA)
                self._conn.commit()
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                self._conn.rollback()
                time.sleep(0.05)

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT text, prompt_tokens, completion_tokens, extra, created FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return CachedResponse(row[0], row[1], row[2], json.loads(row[3] or "{}"), row[4])

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        return {k: hit for k in keys if (hit := self.get(k)) is not None}

    def put(
        self,
        key: str,
        request: dict[str, Any],
        text: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Store one response and commit immediately (a crash loses at most the call in flight)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    time.time(),
                    str(request.get("backend", "")),
                    str(request.get("model", "")),
                    json.dumps(request, sort_keys=True, default=str),
                    text,
                    prompt_tokens,
                    completion_tokens,
                    json.dumps(extra or {}, default=str),
                ),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
