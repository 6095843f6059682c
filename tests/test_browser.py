"""The book in a real browser: every page opened in headless Chromium (Debian's chromium-headless-shell, driven by
Playwright) from a 127.0.0.1 server, with no console errors, every figure loaded, every internal link resolved and
no request leaving the machine; a screenshot of each page is kept (``_build/screenshots/``, CI's artifact).

Without a Chromium the browser tests skip, saying how to install one, unless ``LABSCALE_REQUIRE_BROWSER=1`` (CI)."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from labscale import browser
from labscale.book import CHAPTERS, build_html, execute_chapter, placeholder_chapter
from labscale.config import PROJECT_ROOT

#: a 1x1 PNG
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def require_browser() -> Path:
    """The Chromium binary; skips (fails under LABSCALE_REQUIRE_BROWSER=1) when it or Playwright is missing."""
    found = browser.find_browser()
    reason = None if found else f"no Chromium for the browser tests: {browser.INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed: pip install -e '.[dev]'"
    if reason and os.environ.get("LABSCALE_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    return found


def screenshots_dir() -> Path:
    """Where the book test keeps its screenshots: $LABSCALE_SCREENSHOTS, else _build/screenshots (CI's artifact)."""
    return Path(os.environ.get("LABSCALE_SCREENSHOTS") or PROJECT_ROOT / "_build" / "screenshots")


def test_link_and_request_rules_without_a_browser(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "page.html").write_text('<h1 id="there">x</h1><a name="old"></a>')
    (tmp_path / "sub" / "index.html").write_text("<p>folder page</p>")
    base = "http://127.0.0.1:8000/"
    assert browser.broken_link(tmp_path, base, base + "page.html#there") is None
    assert browser.broken_link(tmp_path, base, base + "page.html#old") is None
    assert browser.broken_link(tmp_path, base, base + "sub/") is None
    assert "no #gone" in browser.broken_link(tmp_path, base, base + "page.html#gone")
    assert "no such file" in browser.broken_link(tmp_path, base, base + "nope.html")
    assert browser.broken_link(tmp_path, base, "https://doi.org/10.1/x") is None  # not internal: never fetched
    assert browser.is_local(base + "x.js") and browser.is_local("data:image/png;base64,AAAA")
    assert not browser.is_local("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js")
    assert not browser.is_local("http://localhost:8000/x.js")  # only 127.0.0.1 counts as staying here
    assert browser.screenshot_name("book/chapters/cost.html") == "book__chapters__cost.png"
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "macros.html").write_text("theme fragment")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=page.html" />')
    assert browser.html_pages(tmp_path) == ["index.html", "page.html", "sub/index.html"]
    assert browser.refresh_target(tmp_path / "index.html") == "page.html"


def test_the_book_lists_each_script_once():
    from sphinx.builders.html._assets import _JavaScript

    from labscale.sphinx_scripts import unique_scripts

    thebe = "const THEBE_JS_URL = 'x'"  # sphinx-thebe's inline config, added once as None and once as ""
    scripts = [_JavaScript(None, body=thebe), _JavaScript("_static/a.js"), _JavaScript("", body=thebe)]
    assert unique_scripts(scripts) == scripts[:2]
    assert len(unique_scripts([_JavaScript("_static/a.js"), _JavaScript("_static/a.js", defer="defer")])) == 2


def test_a_broken_link_image_and_external_script_are_each_reported(tmp_path):
    executable = require_browser()
    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.png").write_bytes(PIXEL)
    (site / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=page.html" />')
    (site / "page.html").write_text(
        "<html><head><script src='https://cdn.example.com/lib.js'></script></head><body id='top'>"
        "<img src='ok.png'><img src='missing.png'>"
        "<a href='other.html#here'>fine</a> <a href='other.html#gone'>no anchor</a> <a href='nowhere.html'>no page</a>"
        "<a href='#top'>top</a> <a href='https://example.org/'>outside, only a link</a></body></html>"
    )
    (site / "other.html").write_text("<html><body><h2 id='here'>here</h2><a href='page.html'>back</a></body></html>")
    reports = {r.page: r for r in browser.check_book(site, tmp_path / "shots", executable)}

    assert sorted(reports) == ["index.html", "other.html", "page.html"]
    assert reports["other.html"].ok
    page = reports["page.html"]
    assert [Path(u).name for u in page.images] == ["ok.png", "missing.png"]
    assert [Path(u).name for u in page.broken_images] == ["missing.png"]
    assert [b.split(" ")[0].rsplit("/", 1)[1] for b in page.broken_links] == ["nowhere.html", "other.html#gone"]
    assert page.external_requests == ["https://cdn.example.com/lib.js"]  # blocked, never sent
    assert any("missing.png" in f and "404" in f for f in page.failed_requests)
    assert page.console_errors  # the 404 and the blocked script are logged by the page too
    assert any(link.endswith("page.html") for link in reports["index.html"].links)  # the redirect, checked
    assert (tmp_path / "shots" / "page.png").read_bytes().startswith(PNG_MAGIC)
    assert browser.main([str(site), "--screenshots", str(tmp_path / "cli"), "--browser", str(executable)]) == 1


def toc_files(toc: Path) -> list[str]:
    """Every page ``_toc.yml`` lists (its root included), as written there (no suffix)."""
    import yaml

    def walk(node):
        if isinstance(node, dict):
            yield from ([node["file"]] if "file" in node else [])
            yield from (f for value in node.values() for f in walk(value))
        elif isinstance(node, list):
            yield from (f for item in node for f in walk(item))

    data = yaml.safe_load(toc.read_text())
    return [data["root"], *walk(data)]


def _small_book(root: Path, monkeypatch) -> None:
    """A real book in ``root``: the project's configuration and pages, the cost and transparency chapters executed
    on small inputs (four figures), every other chapter a placeholder page."""
    from labscale import released
    from labscale.runner import plan_experiment, run_experiment

    monkeypatch.setenv("LABSCALE_CACHE", str(root / "responses.sqlite"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "book").mkdir()
    for page in [*(PROJECT_ROOT / "book").glob("*.md"), PROJECT_ROOT / "book" / "references.bib"]:
        shutil.copy(page, root / "book" / page.name)
    chapters, empty = root / "book" / "chapters", root / "empty"
    empty.mkdir()
    plan = plan_experiment(
        ["smollm2-135m"], ["fact_checking"], [0], limit=2, max_new_tokens={"fact_checking": 4}, n_resamples=200,
        output_dir=root / "runs" / "eval",
    )  # fmt: skip
    run_experiment(plan, progress=False)
    execute_chapter(
        "cost",
        output=chapters / "cost.ipynb",
        parameters={"runs_root": str(root / "runs" / "eval"), "finetune_records": [str(empty)]},
    )
    # one released run re-scored (about a minute): the transparency-vs-quality figure needs a measured model
    released.record_released_runs(root / "released", runs=["gpt4_zeroshot_outputs"], n_resamples=200, progress=False)
    execute_chapter(
        "transparency",
        output=chapters / "transparency.ipynb",
        parameters={"released_root": str(root / "released"), "adapter_root": str(empty), "runs_root": str(empty)},
    )
    for name in set(CHAPTERS) - {"cost", "transparency"}:
        placeholder_chapter(name, ["(not run in this test)"], output=chapters / f"{name}.ipynb")


@pytest.mark.slow
def test_every_page_of_a_built_book_reads_cleanly_offline(embedded_model_dir, shared_data, tmp_path, monkeypatch):
    executable = require_browser()
    start = time.perf_counter()
    _small_book(tmp_path, monkeypatch)
    html = build_html(tmp_path)
    built = time.perf_counter()
    shots = screenshots_dir()
    reports = browser.check_book(html, shots, executable)
    read = time.perf_counter() - built
    print(f"book executed and built in {built - start:.1f} s, read in the browser in {read:.1f} s")
    print(browser.summary_frame(reports).to_string(index=False))

    pages = {r.page: r for r in reports}
    assert {f"{f}.html" for f in toc_files(tmp_path / "_toc.yml")} | {"index.html"} <= set(pages)
    assert [line for r in reports for line in r.failures()] == []  # console, images, links, requests
    figures = {page: [u for u in r.images if "/_images/" in u] for page, r in pages.items()}  # not theme icons
    assert len(figures["book/chapters/cost.html"]) >= 1
    assert len(figures["book/chapters/transparency.html"]) >= 3  # heatmap, change, transparency vs quality
    assert sum(len(r.links) for r in reports) > 10 * len(reports)  # the navigation alone links every page
    for report in reports:
        assert report.screenshot == shots / browser.screenshot_name(report.page)
        data = report.screenshot.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, report.page
