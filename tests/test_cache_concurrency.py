"""Several processes write and read one SQLite response cache at once (as the Ray grid's workers do).

Every process opens its own :class:`ResponseCache` on a fresh file after a common barrier, so creating the schema
and switching to WAL race as well as the writes. Shared keys are written by every writer with the same text (a
response depends on its key only); readers check every row they see while the writers run.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import traceback

from labscale.cache import ResponseCache, request_key

WRITERS, PUTS, SHARED, READERS = 4, 200, 50, 2


def key_of(name: str) -> str:
    return request_key({"backend": "test", "model": "m", "item": name})


def text_of(name: str) -> str:
    return f"reply to {name} " + "x" * (len(name) * 7)  # varied lengths, a pure function of the key


def names_of(writer: int) -> list[str]:
    """A writer's keys: SHARED keys every writer puts, the rest its own."""
    return [f"shared-{j}" for j in range(SHARED)] + [f"w{writer}-{j}" for j in range(PUTS - SHARED)]


def all_names() -> list[str]:
    return sorted({name for w in range(WRITERS) for name in names_of(w)})


def _writer(path: str, writer: int, barrier, results) -> None:
    try:
        barrier.wait()
        cache = ResponseCache(path)
        for n, name in enumerate(names_of(writer)):
            request = {"backend": "test", "model": "m", "item": name}
            cache.put(key_of(name), request, text_of(name), prompt_tokens=n, completion_tokens=writer)
        cache.close()
        results.put(("writer", writer, None))
    except BaseException:
        results.put(("writer", writer, traceback.format_exc()))


def _reader(path: str, reader: int, barrier, stop, results) -> None:
    try:
        barrier.wait()
        cache = ResponseCache(path)
        names, seen, wrong = all_names(), 0, []
        done = False
        while not done:  # passes while the writers write, and one more after they finished
            done = stop.is_set()
            for name in names:
                hit = cache.get(key_of(name))
                if hit is not None:
                    seen += 1
                    if hit.text != text_of(name):
                        wrong.append(name)
        cache.close()
        results.put(("reader", reader, f"wrong text for {wrong[:5]}" if wrong else None, seen))
    except BaseException:
        results.put(("reader", reader, traceback.format_exc(), 0))


def test_processes_share_one_cache_file(tmp_path):
    path = str(tmp_path / "responses.sqlite")
    ctx = multiprocessing.get_context("spawn")
    barrier, stop, results = ctx.Barrier(WRITERS + READERS), ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(path, w, barrier, results)) for w in range(WRITERS)]
    readers = [ctx.Process(target=_reader, args=(path, r, barrier, stop, results)) for r in range(READERS)]
    start = time.perf_counter()
    for process in writers + readers:
        process.start()
    outcomes = [results.get(timeout=240) for _ in writers]
    elapsed = time.perf_counter() - start
    stop.set()
    outcomes += [results.get(timeout=120) for _ in readers]
    for process in writers + readers:
        process.join(timeout=60)
        assert process.exitcode == 0
    errors = [o for o in outcomes if o[2] is not None]
    assert not errors, errors
    assert all(o[3] > 0 for o in outcomes if o[0] == "reader")  # every reader found rows (and checked their text)

    expected = all_names()
    assert len(expected) == WRITERS * (PUTS - SHARED) + SHARED == 650
    cache = ResponseCache(path)
    assert len(cache) == len(expected)
    for name in expected:
        hit = cache.get(key_of(name))
        assert hit is not None and hit.text == text_of(name)
    own = cache.get(key_of("w3-7"))
    assert (own.prompt_tokens, own.completion_tokens) == (SHARED + 7, 3)
    cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    print(f"{WRITERS} writers x {PUTS} puts + {READERS} readers: {len(expected)} rows in {elapsed:.1f} s")
