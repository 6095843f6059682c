"""A Sphinx extension for the book (``_config.yml``: ``sphinx: extra_extensions``): each page's scripts listed once.

sphinx-thebe 0.3.1 adds its inline configuration script (``const THEBE_JS_URL = ...``) after the HTML builder has
started, once with ``filename=None`` and once as ``''``; Sphinx 7 does not see the two as equal, every page gets
it twice, and the browser throws "Identifier 'THEBE_JS_URL' has already been declared" on every page
(``python -m labscale.browser`` reports it). This drops the second copy of any script a page lists twice.
"""

from __future__ import annotations


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", script) or ""  # None and "" both mean an inline script
    return (str(filename), getattr(script, "priority", 500), *sorted(attributes.items()))


def unique_scripts(scripts: list) -> list:
    """``scripts`` with later duplicates (same file or inline body, same attributes) removed, order kept."""
    seen, kept = set(), []
    for script in scripts:
        if _key(script) not in seen:
            seen.add(_key(script))
            kept.append(script)
    return kept


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    if isinstance(context.get("script_files"), list):
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
