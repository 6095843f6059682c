"""Progress bars, and the side channel that carries them out of a notebook kernel to the terminal of ``make book``.

Every labscale progress bar is made by :func:`bar`. Run interactively it is ``tqdm.auto`` (a widget in Jupyter, a
text bar in a terminal). When ``LABSCALE_PROGRESS_FILE`` names a file -- the book build sets it for the kernels it
starts (:func:`relay`) -- every bar writes to that file instead, and nothing reaches the notebook's outputs: the
pages stay free of progress text while the build's terminal shows it, copied from the file by :class:`Tail`.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from tqdm.std import tqdm as tqdm_std

#: the environment variable naming the side-channel file (set by the book build for its kernels)
ENV = "LABSCALE_PROGRESS_FILE"
#: library progress bars (Hugging Face hub/transformers weight loading, datasets maps) a kernel cannot route to the
#: side channel: the book build turns them off, so they do not land in the notebook's stderr
_QUIET_LIBRARIES = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
_streams: dict[str, IO[str]] = {}
_lock = threading.Lock()


def side_channel() -> str | None:
    """The side-channel file bars write to, or None when bars show where they run."""
    return os.environ.get(ENV) or None


def _stream(path: str) -> IO[str]:
    """One line-buffered append handle per file and process (tqdm flushes after every refresh)."""
    with _lock:
        handle = _streams.get(path)
        if handle is None or handle.closed:
            handle = _streams[path] = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open
        return handle


def bar(
    iterable: Iterable | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = True,
    disable: bool = False,
    **options: Any,
):
    """A tqdm progress bar: ``tqdm.auto`` normally; a fixed-width text bar written to the side-channel file (and
    nowhere else) while :data:`ENV` is set. ``options`` go to tqdm (``initial``, ``postfix``, ...)."""
    path = side_channel()
    if path and not disable:
        return _SideBar(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            leave=leave,
            file=_stream(path),
            dynamic_ncols=False,
            ncols=100,
            mininterval=0.5,
            **options,
        )
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, **options)


class _SideBar(tqdm_std):
    """A bar in the side-channel file. One that is cleared when it closes (``leave=False``) first shows its final
    state, so a log sees every call finish (mininterval may have skipped it)."""

    def close(self) -> None:
        if not self.disable and not self.leave:
            self.refresh()
        super().close()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KEY = re.compile(r"(.*?): +(?:\d+%\||\d)")


class Tail:
    """Copy what is appended to ``path`` to ``stream`` from a background thread, until :meth:`stop`.

    ``live`` (default: ``stream.isatty()``) copies the text as written, carriage returns and cursor moves included,
    so a terminal redraws the bars in place. Otherwise (a CI log, a file) each bar's latest state is written as one
    line at most every ``interval`` seconds, and at once when a bar reaches 100 %: a log does not interpret ``\\r``,
    and copying every refresh (several a second per bar) would bury it."""

    def __init__(
        self, path: str | Path, stream: IO[str], *, live: bool | None = None, interval: float = 15.0, poll: float = 0.1
    ):
        self.path, self.stream, self.interval, self.poll = Path(path), stream, interval, poll
        self.live = stream.isatty() if live is None else live
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._offset = 0
        self._buffer = ""  # summary mode: text after the last \r or \n
        self._latest: dict[str, str] = {}  # summary mode: bar -> its newest state not yet written
        self._written: dict[str, str] = {}
        self._last_emit = time.monotonic()
        self._line = ""  # live mode: what the terminal's current line holds (after the last \r or \n)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labscale-progress-tail", daemon=True)

    def start(self) -> Tail:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Copy what is left, then end the thread (the terminal is left at the start of a line)."""
        self._stop.set()
        self._thread.join()
        self._read(final=True)
        if self.live and self._line:  # end the bar's line; a line a bar cleared is just returned to
            self._write("\n" if self._line.strip() else "\r")

    def __enter__(self) -> Tail:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._read()

    def _read(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        text = self._decoder.decode(data, final=final)
        if self.live:
            if text:
                self._write(text)
            return
        self._summarise(text, final)

    def _summarise(self, text: str, final: bool) -> None:
        parts = re.split(r"[\r\n]", self._buffer + text)
        self._buffer = "" if final else parts.pop()
        now = time.monotonic()
        for part in parts:
            line = _ANSI.sub("", part).strip()
            if not line:
                continue
            match = _KEY.match(line)
            key = match.group(1) if match else line
            self._latest[key] = line
            if "100%|" in line and self._written.get(key) != line:
                self._emit(key)
        if self._latest and (final or now - self._last_emit >= self.interval):
            for key in list(self._latest):
                self._emit(key)
            self._last_emit = now

    def _emit(self, key: str) -> None:
        line = self._latest.pop(key)
        if self._written.get(key) != line:
            self._written[key] = line
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self._line = (self._line + text).rsplit("\n", 1)[-1].rsplit("\r", 1)[-1][-200:]


@contextlib.contextmanager
def relay(stream: IO[str] | None = None, *, live: bool | None = None, interval: float = 15.0) -> Iterator[Path]:
    """Route every progress bar of the kernels started inside this block to ``stream`` (default: ``sys.stderr``):
    a fresh side-channel file is named in :data:`ENV` (kernels inherit the environment they are started with),
    library bars that cannot be routed are turned off, and a :class:`Tail` copies the file to ``stream``. The
    environment is restored and the file removed afterwards. Yields the file's path."""
    stream = stream if stream is not None else sys.stderr
    handle, name = tempfile.mkstemp(prefix="labscale-progress-", suffix=".log")
    os.close(handle)
    settings = {ENV: name, **{k: os.environ.get(k, v) for k, v in _QUIET_LIBRARIES.items()}}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        with Tail(name, stream, live=live, interval=interval):
            yield Path(name)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with _lock:
            old = _streams.pop(name, None)
        if old is not None:
            old.close()
        Path(name).unlink(missing_ok=True)
