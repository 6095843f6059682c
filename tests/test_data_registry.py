"""The data registry: descriptions true to the mirror, fetching through pooch from a real HTTP server on 127.0.0.1,
local-folder mirrors, checksum and missing-file errors that name the fix, LABSCALE_DATA read in place, and the
``labscale-data`` command."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labscale.data import registry
from labscale.errors import DataUnavailable, InvalidParameter

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
needs_mirror = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data beside this checkout")

STUDY_DATASETS = {
    "climate-fever",
    "mts-dialog",
    "magellan-er",
    "bbq",
    "medqa",
    "squad-v2.0",
    "qasper",
    "truthfulqa",
    "study-outputs",
    "fmti",
    "spider",
    "viggo",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def serve(folder: Path):
    """``folder`` over HTTP on 127.0.0.1 (a free port); yields (base URL, the request paths seen)."""
    seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, fmt, *args):
            seen.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty LABSCALE_HOME, no LABSCALE_DATA and no mirror."""
    path = tmp_path / "home"
    monkeypatch.setenv("LABSCALE_HOME", str(path))
    monkeypatch.delenv("LABSCALE_DATA", raising=False)
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    return path


@pytest.fixture()
def http_mirror(home, monkeypatch):
    """../shared/data served over HTTP and set as the mirror; yields the request log."""
    if not SHARED_DATA.is_dir():
        pytest.skip("no ../shared/data beside this checkout")
    with serve(SHARED_DATA) as (url, seen):
        monkeypatch.setenv(registry.MIRROR_ENV, url)
        yield seen


def partial_mirror(tmp_path: Path, dataset: str, *, drop: str | None = None, change: str | None = None) -> Path:
    """A mirror folder holding only ``dataset``, copied from ../shared/data, without ``drop`` / with ``change``
    altered."""
    if not SHARED_DATA.is_dir():
        pytest.skip("no ../shared/data beside this checkout")
    root = tmp_path / "mirror"
    shutil.copytree(SHARED_DATA / dataset, root / dataset)
    if drop:
        (root / dataset / drop).unlink()
    if change:
        with open(root / dataset / change, "ab") as fh:
            fh.write(b"\nnot the release\n")
    return root


# ---------------------------------------------------------------------------------------------------------------
# the registry itself


def test_registry_describes_the_study_datasets_with_provenance():
    assert set(registry.datasets()) == STUDY_DATASETS
    for name in registry.datasets():
        entry = registry.dataset(name)
        assert entry.licence and entry.citation and entry.source and entry.title, name
        paths = [f.path for f in entry.files]
        assert paths and len(paths) == len(set(paths)), name
        for f in entry.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0, f.name
            # canonical URLs are pinned to a commit
            assert re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/\S+$", f.url), f.url
            assert "SOURCE.md" not in f.path and not f.path.startswith("/") and ".." not in f.path.split("/")
    # the four renamed FMTI reports point at their original names
    bigcode = next(
        f
        for f in registry.files("fmti")
        if f.path.endswith("BigCode_Hugging_Face_ServiceNow_fmtransparencyreport_May2024.csv")
    )
    assert bigcode.url.endswith("BigCode%3AHugging%20Face%3AServiceNow_fmtransparencyreport_May2024.csv")
    assert "original name" in bigcode.note


@needs_mirror
def test_registry_is_true_to_the_mirror():
    """Every file of every ../shared/data/<dataset> (except the copy's SOURCE.md) is registered with its sha256 and
    size, and nothing else is."""
    described = registry.describe_folder(SHARED_DATA, registry.datasets())
    registered = {
        name: {f.path: {"sha256": f.sha256, "size": f.size} for f in registry.files(name)}
        for name in registry.datasets()
    }
    assert described == registered
    assert {p.name for p in SHARED_DATA.iterdir() if p.is_dir()} == set(registry.datasets())


@needs_mirror
def test_make_registry_regenerates_the_same_file():
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_registry.py"), str(SHARED_DATA), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "up to date" in run.stdout


def test_bad_dataset_names_fail_before_any_download(home, tmp_path, monkeypatch):
    with serve(tmp_path) as (url, seen):
        monkeypatch.setenv(registry.MIRROR_ENV, url)
        calls = [
            lambda: registry.fetch("climate_fever"),
            lambda: registry.locate("climate_fever"),
            lambda: registry.files("climate_fever"),
            lambda: registry.verify(["qasper", "climate_fever"]),
            lambda: registry.cache_dir("climate_fever"),
            lambda: registry.available("climate_fever"),
        ]
        for call in calls:
            with pytest.raises(
                InvalidParameter, match=r"unknown dataset 'climate_fever'; valid choices: .*'climate-fever'"
            ):
                call()
        assert seen == []
    assert not (home / "data").exists() or not any((home / "data").rglob("*"))


# ---------------------------------------------------------------------------------------------------------------
# fetching


def test_fetch_over_http_through_pooch(http_mirror, home):
    folder = registry.fetch("qasper")
    assert folder == home / "data" / "qasper"
    for f in registry.files("qasper"):
        assert sha256(folder / f.path) == f.sha256
    assert sorted(http_mirror) == ["/qasper/LICENSE", "/qasper/fixtures/data/qasper_sample_small.json"]
    climate = registry.fetch("climate-fever")
    assert sha256(climate / "climate-fever.jsonl") == registry.files("climate-fever")[0].sha256
    # a second fetch is served by the cache (hashes checked, nothing requested)
    before = len(http_mirror)
    assert registry.fetch("qasper") == folder and len(http_mirror) == before
    assert registry.locate("qasper") == folder
    assert all(row.status == "ok" for row in registry.verify(["qasper", "climate-fever"]))
    assert registry.is_cached("qasper") and not registry.is_cached()


def test_fetch_from_a_local_mirror_folder(home, tmp_path, monkeypatch):
    mirror = partial_mirror(tmp_path, "truthfulqa")
    monkeypatch.setenv(registry.MIRROR_ENV, str(mirror))
    folder = registry.fetch("truthfulqa")
    for f in registry.files("truthfulqa"):
        assert (folder / f.path).read_bytes() == (mirror / "truthfulqa" / f.path).read_bytes()
    assert not list(folder.rglob("*.part"))  # no temporary file left behind
    monkeypatch.setenv(registry.MIRROR_ENV, f"file://{mirror}")
    assert registry.fetch("truthfulqa", force=True) == folder


def test_offline_without_cache_or_mirror_names_the_file_and_the_fix(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for call in (lambda: registry.fetch("mts-dialog"), lambda: registry.locate("mts-dialog")):
        with pytest.raises(registry.DataMissing) as caught:
            call()
        message = str(caught.value)
        assert isinstance(caught.value, DataUnavailable)
        assert "mts-dialog/LICENSE.txt" in message and caught.value.file == "mts-dialog/LICENSE.txt"
        assert "labscale-data fetch mts-dialog" in message and "LABSCALE_DATA_MIRROR" in message
    assert not registry.available("mts-dialog")


def test_online_without_mirror_downloads_the_canonical_url(home, monkeypatch):
    """No network here: pooch is asked for the pinned canonical URL, and a connection error names the fix."""
    import pooch
    import requests

    asked = []

    def refuse(url, **kwargs):
        asked.append((url, kwargs["known_hash"]))
        raise requests.exceptions.ConnectionError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(pooch, "retrieve", refuse)
    with pytest.raises(registry.DataMissing, match=r"squad-v2.0/cs224n-split/dev-v2.0.json could not be downloaded"):
        registry.fetch("squad-v2.0")
    (f,) = registry.files("squad-v2.0")
    assert asked == [(f.url, f"sha256:{f.sha256}")]
    assert f.url.startswith("https://raw.githubusercontent.com/chrischute/squad/")


def test_a_corrupted_cached_file_fails_verify_and_fetch_until_forced(http_mirror, home):
    folder = registry.fetch("qasper")
    fixture = folder / "fixtures" / "data" / "qasper_sample_small.json"
    licence_mtime = (folder / "LICENSE").stat().st_mtime_ns
    expected = registry.files("qasper")[1].sha256
    fixture.write_text(fixture.read_text().replace("seed lexicon", "seed lexikon"))
    actual = sha256(fixture)

    rows = {row.file: row for row in registry.verify("qasper")}
    assert rows["LICENSE"].status == "ok"
    assert rows["fixtures/data/qasper_sample_small.json"].status == "mismatch"
    assert expected in rows["fixtures/data/qasper_sample_small.json"].detail
    assert actual in rows["fixtures/data/qasper_sample_small.json"].detail

    for call in (lambda: registry.fetch("qasper"), lambda: registry.locate("qasper")):
        with pytest.raises(registry.ChecksumMismatch) as caught:
            call()
        message = str(caught.value)
        assert "qasper/fixtures/data/qasper_sample_small.json" in message
        assert f"expected {expected}" in message and f"actual {actual}" in message
        assert "labscale-data fetch --force qasper" in message
        assert (caught.value.expected, caught.value.actual) == (expected, actual)

    registry.fetch("qasper", force=True)
    assert sha256(fixture) == expected
    assert (folder / "LICENSE").stat().st_mtime_ns == licence_mtime  # the good file was kept
    assert all(row.status == "ok" for row in registry.verify("qasper"))


def test_a_file_missing_on_an_http_mirror_names_the_file_and_the_fix(home, tmp_path, monkeypatch):
    mirror = partial_mirror(tmp_path, "qasper", drop="fixtures/data/qasper_sample_small.json")
    with serve(mirror) as (url, _):
        monkeypatch.setenv(registry.MIRROR_ENV, url)
        with pytest.raises(registry.DataMissing) as caught:
            registry.fetch("qasper")
    message = str(caught.value)
    assert "qasper/fixtures/data/qasper_sample_small.json is missing on the mirror" in message
    assert "HTTP 404" in message and "labscale-data fetch qasper" in message
    assert (home / "data" / "qasper" / "LICENSE").is_file()  # what the mirror has was fetched


def test_a_file_missing_on_a_mirror_folder_names_the_file_and_the_fix(home, tmp_path, monkeypatch):
    mirror = partial_mirror(tmp_path, "viggo", drop="valid.csv")
    monkeypatch.setenv(registry.MIRROR_ENV, str(mirror))
    with pytest.raises(
        registry.DataMissing, match=r"viggo/valid.csv is missing on the mirror .*labscale-data fetch viggo"
    ):
        registry.fetch("viggo")


@pytest.mark.parametrize("kind", ["http", "folder"])
def test_a_mirror_serving_another_file_is_a_checksum_mismatch(home, tmp_path, monkeypatch, kind):
    mirror = partial_mirror(tmp_path, "qasper", change="LICENSE")
    actual = sha256(mirror / "qasper" / "LICENSE")
    expected = registry.files("qasper")[0].sha256
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(serve(mirror))[0] if kind == "http" else str(mirror)
        monkeypatch.setenv(registry.MIRROR_ENV, base)
        with pytest.raises(registry.ChecksumMismatch) as caught:
            registry.fetch("qasper")
    message = str(caught.value)
    assert "qasper/LICENSE" in message and f"expected {expected}" in message and f"actual {actual}" in message
    assert "labscale-data fetch --force qasper" in message
    assert not (home / "data" / "qasper" / "LICENSE").exists()  # the wrong file never reaches the cache


# ---------------------------------------------------------------------------------------------------------------
# locate, LABSCALE_DATA and available


def test_locate_uses_a_given_path_as_is(home, tmp_path):
    given = tmp_path / "my-mts"
    given.mkdir()
    assert registry.locate("mts-dialog", given) == given
    assert registry.locate("mts-dialog", str(given)) == given
    with pytest.raises(InvalidParameter, match=re.escape(repr(str(tmp_path / "nowhere")))):
        registry.locate("mts-dialog", tmp_path / "nowhere")
    assert not (home / "data" / "mts-dialog").exists()


def test_labscale_data_is_read_in_place(home, tmp_path, monkeypatch):
    user = tmp_path / "release"
    (user / "bbq" / "data").mkdir(parents=True)
    (user / "bbq" / "data" / "Age.jsonl").write_text("{}\n")
    monkeypatch.setenv("LABSCALE_DATA", str(user))
    assert registry.locate("bbq") == user / "bbq" and registry.folder("bbq") == user / "bbq"
    assert registry.available("bbq")
    statuses = {row.file: row.status for row in registry.verify("bbq")}
    assert statuses["data/Age.jsonl"] == "mismatch" and statuses["data/Religion.jsonl"] == "missing"
    with pytest.raises(registry.DataMissing, match=r"LABSCALE_DATA is set but has no viggo/ folder"):
        registry.locate("viggo")
    assert not (home / "data" / "bbq").exists()  # nothing was downloaded


@needs_mirror
def test_available_means_locate_needs_no_download(home, tmp_path, monkeypatch):
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    assert not registry.available("qasper")  # an empty cache, no LABSCALE_DATA, no mirror
    monkeypatch.setenv(registry.MIRROR_ENV, str(SHARED_DATA))
    assert registry.available("qasper")  # a mirror serves it
    registry.fetch("qasper")
    monkeypatch.delenv(registry.MIRROR_ENV)
    assert registry.available("qasper") and not registry.available("bbq")  # cached / not cached
    monkeypatch.setenv("LABSCALE_DATA", str(tmp_path))
    assert not registry.available("qasper")  # an explicit LABSCALE_DATA is never second-guessed


def test_source_url_joins_an_http_mirror(monkeypatch):
    f = registry.files("truthfulqa")[0]
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    assert registry.source_url(f) == f.url
    monkeypatch.setenv(registry.MIRROR_ENV, "http://127.0.0.1:9/base")
    assert registry.source_url(f) == f"http://127.0.0.1:9/base/truthfulqa/{f.path}"
    monkeypatch.setenv(registry.MIRROR_ENV, "/some/folder")
    assert registry.source_url(f) == f.url  # a folder mirror is copied, not downloaded


# ---------------------------------------------------------------------------------------------------------------
# the command line


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labscale.data.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@needs_mirror
def test_cli_list_fetch_verify(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LABSCALE_DATA"}
    env.update(LABSCALE_HOME=str(tmp_path / "home"), LABSCALE_DATA_MIRROR=str(SHARED_DATA), HF_HUB_OFFLINE="1")
    listed = cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    for name in STUDY_DATASETS:
        assert re.search(rf"^{re.escape(name)}\s+\d+\s+[\d.]+ MB\s+no\s+\S", listed.stdout, re.M), listed.stdout
    assert "CC BY 4.0" in listed.stdout and "12 datasets, 153 files" in listed.stdout

    fetched = cli("fetch", "qasper", "viggo", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "qasper: 2 files" in fetched.stdout and "viggo: 3 files" in fetched.stdout
    assert re.search(r"^qasper\s+2\s+\S+ MB\s+yes", cli("list", env=env).stdout, re.M)

    verified = cli("verify", "qasper", "viggo", env=env)
    assert verified.returncode == 0 and "all 5 files ok" in verified.stdout, verified.stdout + verified.stderr
    everything = cli("verify", env=env)
    assert everything.returncode == 1 and "missing" in everything.stdout and "qasper: 2 ok" in everything.stdout

    licence = tmp_path / "home" / "data" / "qasper" / "LICENSE"
    licence.write_text("changed")
    broken = cli("verify", "qasper", env=env)
    assert broken.returncode == 1 and "mismatch qasper/LICENSE" in broken.stdout
    assert "labscale-data fetch --force qasper" in broken.stderr
    refused = cli("fetch", "qasper", env=env)
    assert refused.returncode == 1 and "labscale-data fetch --force qasper" in refused.stderr
    repaired = cli("fetch", "--force", "qasper", env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert cli("verify", "qasper", env=env).returncode == 0

    bad = cli("fetch", "qasper", "squad", env=env)
    assert bad.returncode == 2 and "unknown dataset 'squad'" in bad.stderr and "'squad-v2.0'" in bad.stderr


def test_cli_verify_of_an_empty_cache_and_the_console_script(home, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LABSCALE_DATA", registry.MIRROR_ENV)}
    env.update(LABSCALE_HOME=str(home), HF_HUB_OFFLINE="1")
    script = Path(sys.executable).with_name("labscale-data")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "labscale.data.cli"]
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "list" in helped.stdout and "verify" in helped.stdout
    verified = subprocess.run([*command, "verify", "medqa"], capture_output=True, text=True, env=env, timeout=120)
    assert verified.returncode == 1 and "missing  medqa/LICENSE" in verified.stdout
    assert "labscale-data fetch medqa" in verified.stderr
