"""Read the built HTML book in a real browser: every page opened in headless Chromium, offline.

The folder is served by a stdlib ``http.server`` on 127.0.0.1 (an ephemeral port, in a thread) and each page is
opened with Playwright driving the system Chromium (Debian's ``chromium-headless-shell``; ``playwright install``
is not needed). Per page it records console and page errors, images that fail to load, internal links (``#anchors``
included) that do not resolve, local requests that fail, and every request to a host other than 127.0.0.1 (blocked,
so reading the book never leaves the machine), and it keeps a full-page screenshot.

``python -m labscale.browser [_build/html] [--screenshots _build/screenshots]`` prints one line per page and exits
1 when any page fails a check.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

#: environment variable naming the Chromium binary to drive (default: found on PATH)
BROWSER_ENV = "LABSCALE_CHROMIUM"
#: binaries tried on PATH, in order
BROWSER_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser")
#: build folders holding theme fragments and page sources rather than pages
SKIPPED_DIRS = ("_static", "_sources", "_images")
INSTALL_HINT = "apt-get install chromium-headless-shell (or set LABSCALE_CHROMIUM to a Chromium binary)"
LOCAL_HOST = "127.0.0.1"

#: every <img> on the page once each has settled (lazy images made eager first): its URL and whether it loaded
_IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
}"""
_LINKS_JS = "() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"


@dataclass
class PageReport:
    """What one page did in the browser."""

    page: str
    seconds: float = 0.0
    console_errors: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # internal ones, #fragment kept
    broken_links: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def failures(self) -> list[str]:
        """Each failed check, as one line."""
        checks = {
            "console error": self.console_errors,
            "broken image": self.broken_images,
            "broken link": self.broken_links,
            "failed request": self.failed_requests,
            "external request": self.external_requests,
        }
        return [f"{self.page}: {kind}: {item}" for kind, items in checks.items() for item in items]

    @property
    def ok(self) -> bool:
        return not self.failures()


def find_browser() -> Path | None:
    """The Chromium binary to drive: ``$LABSCALE_CHROMIUM``, else the first of :data:`BROWSER_NAMES` on PATH."""
    named = os.environ.get(BROWSER_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at an ephemeral port in a thread; yields the base URL (ending in ``/``)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def html_pages(folder: Path) -> list[str]:
    """Every page of the built book: each ``.html`` under ``folder`` outside the theme's and sources' folders,
    as a path relative to it (index.html first). Pages reachable from index.html are a subset; the rest (genindex,
    search) are pages a reader can open too, so they are read as well."""
    pages = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*.html")
        if not set(p.relative_to(folder).parts[:-1]) & set(SKIPPED_DIRS)
    )
    return sorted(pages, key=lambda p: p != "index.html")


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.refresh: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update(v for k, v in attrs.items() if v and (k == "id" or (k == "name" and tag == "a")))
        if (
            tag == "meta"
            and (attrs.get("http-equiv") or "").lower() == "refresh"
            and "url=" in (attrs.get("content") or "")
        ):
            self.refresh = attrs["content"].split("url=", 1)[1].strip().strip("'\"")


@functools.lru_cache(maxsize=512)
def _parse(path: Path, mtime: float) -> _Anchors:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def anchors(path: Path) -> frozenset[str]:
    """The ``id`` (and ``<a name>``) values of an HTML file: the fragments a link to it may name."""
    return frozenset(_parse(path, path.stat().st_mtime).ids)


def refresh_target(path: Path) -> str | None:
    """The URL a ``<meta http-equiv="refresh">`` page sends the reader to (the book's index.html), else None."""
    return _parse(path, path.stat().st_mtime).refresh


def target_file(folder: Path, base: str, url: str) -> Path | None:
    """The file under ``folder`` that a same-origin ``url`` names (a folder URL names its index.html); None when
    the URL is not under ``base``."""
    if not url.startswith(base):
        return None
    path = unquote(urlparse(url).path)[len(urlparse(base).path) :]
    target = folder / path
    return target / "index.html" if path == "" or path.endswith("/") or target.is_dir() else target


def broken_link(folder: Path, base: str, url: str) -> str | None:
    """Why an internal link does not resolve (a missing file, or a ``#fragment`` the target page lacks); None when
    it resolves or is not internal."""
    address, fragment = urldefrag(url)
    target = target_file(folder, base, address)
    if target is None:
        return None
    if not target.is_file():
        return f"{url} (no such file)"
    if fragment and target.suffix == ".html" and unquote(fragment) not in anchors(target):
        return f"{url} (no #{unquote(fragment)} on the page)"
    return None


def is_local(url: str) -> bool:
    """Whether a request stays on this machine: an http(s) request to 127.0.0.1, or a data:/blob:/about: URL."""
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob", "about") or parsed.hostname == LOCAL_HOST


def screenshot_name(page: str) -> str:
    """The screenshot file of a page: its path with folders joined by ``__``, e.g. ``book__chapters__cost.png``."""
    return Path(page).with_suffix("").as_posix().replace("/", "__") + ".png"


def _watch(page, report: PageReport) -> None:
    """Record the page's console errors, uncaught exceptions and failed local requests into ``report``."""
    page.on("console", lambda msg: report.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: report.console_errors.append(f"uncaught: {exc}"))

    def failed(request):
        if is_local(request.url):
            report.failed_requests.append(f"{request.url} ({request.failure})")

    def response(resp):
        if resp.status >= 400 and is_local(resp.url):
            report.failed_requests.append(f"{resp.url} (HTTP {resp.status})")

    page.on("requestfailed", failed)
    page.on("response", response)


def _block_external(context, blocked: list[str]) -> None:
    """Abort every request that would leave 127.0.0.1, appending its URL to ``blocked``."""

    def handle(route):
        if is_local(route.request.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", handle)


def check_page(context, folder: Path, base: str, page_path: str, screenshots: Path | None) -> PageReport:
    """Open one page in ``context`` and run every check on it."""
    report = PageReport(page_path)
    blocked: list[str] = []
    _block_external(context, blocked)
    page = context.new_page()
    _watch(page, report)
    start = time.perf_counter()
    try:
        page.goto(base + page_path, wait_until="load", timeout=60_000)
        redirect = refresh_target(folder / page_path)
        if redirect:  # follow it, and check it as a link of the page
            target = urljoin(base + page_path, redirect)
            report.links.append(target)
            page.wait_for_url(urldefrag(target)[0] + "*", wait_until="load", timeout=30_000)
        with contextlib.suppress(Exception):  # a page that keeps polling still gets checked
            page.wait_for_load_state("networkidle", timeout=15_000)
        images = page.evaluate(_IMAGES_JS)
        report.images = [i["src"] for i in images]
        report.broken_images = [i["src"] for i in images if not i["ok"]]
        report.links = sorted({*report.links, *(u for u in page.evaluate(_LINKS_JS) if u.startswith(base))})
        report.broken_links = sorted({b for b in (broken_link(folder, base, u) for u in report.links) if b})
        if screenshots is not None:
            report.screenshot = screenshots / screenshot_name(page_path)
            page.screenshot(path=str(report.screenshot), full_page=True)
    finally:
        report.seconds = time.perf_counter() - start
        report.external_requests = sorted(set(blocked))
        page.close()
        context.unroute("**/*")
    return report


def check_book(
    folder: Path, screenshots: Path | None = None, browser: Path | None = None, pages: list[str] | None = None
) -> list[PageReport]:
    """Serve ``folder`` on 127.0.0.1 and read each of its pages (default: :func:`html_pages`) in headless Chromium;
    a screenshot of each goes to ``screenshots`` when given. Raises FileNotFoundError without a browser."""
    from playwright.sync_api import sync_playwright

    folder = Path(folder).resolve()
    executable = browser or find_browser()
    if executable is None:
        raise FileNotFoundError(f"no Chromium found: {INSTALL_HINT}")
    if screenshots is not None:
        Path(screenshots).mkdir(parents=True, exist_ok=True)
    with serve(folder) as base, sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), headless=True)
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            return [
                check_page(context, folder, base, p, Path(screenshots) if screenshots else None)
                for p in (pages or html_pages(folder))
            ]
        finally:
            chromium.close()


def summary_frame(reports: list[PageReport]):
    """One row per page: seconds and the count of each check's findings (a pandas DataFrame)."""
    import pandas as pd

    rows = [
        {
            "page": r.page,
            "seconds": round(r.seconds, 2),
            "console errors": len(r.console_errors),
            "images": len(r.images),
            "broken images": len(r.broken_images),
            "links": len(r.links),
            "broken links": len(r.broken_links),
            "failed requests": len(r.failed_requests),
            "external requests": len(r.external_requests),
            "screenshot": r.screenshot.name if r.screenshot else "",
        }
        for r in reports
    ]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default="_build/html", help="the built HTML folder (default: _build/html)")
    parser.add_argument("--screenshots", default="_build/screenshots", help="folder for the full-page screenshots")
    parser.add_argument("--browser", help=f"Chromium binary (default: ${BROWSER_ENV} or {BROWSER_NAMES[0]} on PATH)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        reports = check_book(Path(args.html), Path(args.screenshots), Path(args.browser) if args.browser else None)
    except FileNotFoundError as exc:
        print(exc)
        return 2
    print(summary_frame(reports).to_string(index=False))
    failures = [line for r in reports for line in r.failures()]
    for line in failures:
        print(line)
    images = sum(len(r.images) for r in reports)
    print(
        f"{len(reports)} pages, {images} images, {len(failures)} failures in {time.perf_counter() - start:.1f} s; "
        f"screenshots in {args.screenshots}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
