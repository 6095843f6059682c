"""The book's own pages: the glossary defines the terms the chapters rely on and is in the table of contents; the
introduction says in three sentences what the book adds to the paper and points to the glossary."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _glossary_terms() -> list[str]:
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)```", text, re.S)
    assert block, "book/glossary.md holds no {glossary} block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith((" ", "\t"))]


def test_glossary_defines_the_terms_the_chapters_use():
    terms = _glossary_terms()
    for term in ("Shot", "LoRA", "QLoRA", "DP epsilon", "Worst-group accuracy", "AURC", "Execution accuracy", "FMTI"):
        assert term in terms
    assert len(terms) == len(set(terms))  # each term defined once


def test_glossary_and_intro_are_in_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/glossary" in files
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    paragraph = re.search(r"\*\*In three sentences\.\*\*(.*?)\n\n", intro, re.S).group(1)
    body = paragraph.split("Terms are explained")[0]
    assert len(re.findall(r"[.!?](?:\s|$)", body.strip())) == 3
    assert "{ref}`glossary`" in paragraph


def _prose_paragraphs(text: str) -> list[str]:
    """Markdown paragraphs outside fenced blocks (code cells, directives)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [p for p in prose.split("\n\n") if p.strip()]


def test_dollar_amounts_never_open_inline_math():
    # MyST's dollarmath reads "$0.475 ... $0.008" in one paragraph as a formula: amounts must be escaped (\$)
    pages = sorted((ROOT / "notebooks").glob("*.md")) + sorted((ROOT / "book").glob("*.md"))
    offending = []
    for page in pages:
        for paragraph in _prose_paragraphs(page.read_text(encoding="utf-8")):
            dollars = re.findall(r"(?<!\\)\$", paragraph)
            if len(dollars) >= 2 and re.search(r"(?<!\\)\$\d", paragraph):
                offending.append(f"{page.relative_to(ROOT)}: {paragraph[:80]!r}")
    assert offending == []


def test_course_plan_is_in_the_book_and_maps_every_chapter():
    from labscale.book import CHAPTERS

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    using = next(part for part in toc["parts"] if part.get("caption") == "Using this book")
    assert "book/course" in [c["file"] for c in using["chapters"]], "book/course.md is not under 'Using this book'"
    course = (ROOT / "book" / "course.md").read_text(encoding="utf-8")
    assert course.startswith("(course)=\n# Course plan")
    refs = set(re.findall(r"\{ref\}`([^`<]+)`", course))
    for name in CHAPTERS:
        assert name.replace("_", "-") in refs, f"the course plan does not name the {name} chapter ({{ref}} its label)"
    # every exercise it suggests exists (labels are ':label: <chapter>-ex-<n>' in the chapters' Exercises sections)
    labels = {
        label
        for path in (ROOT / "notebooks").glob("*.md")
        for label in re.findall(r"^:label:\s*(\S+)\s*$", path.read_text(encoding="utf-8"), re.M)
    }
    suggested = {r for r in refs if re.fullmatch(r"[a-z-]+-ex-\d+", r)}
    assert suggested and suggested <= labels, f"the course plan names unknown exercises: {sorted(suggested - labels)}"


def test_scaling_out_page_shows_the_price_table_and_real_commands():
    from labscale import cost

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    using = next(p for p in toc["parts"] if p["caption"] == "Using this book")
    assert "book/scaling_out" in [c["file"] for c in using["chapters"]]
    page = (ROOT / "book" / "scaling_out.md").read_text(encoding="utf-8")
    table = cost.scaling_out_costs()
    for r in table.itertuples():  # every row as labscale.cost computes it from the reference files, nothing else
        job = f"{r.job}: {r.hours:g} h, \\${r.usd:.2f}" if r.job else "minutes"  # \$: not inline math
        row = f"| {r.what} | `{r.command}` | {r.gpu} | \\${r.usd_per_hour:.3f} ({r.price_date}) | {job} |"
        assert row in page, f"book/scaling_out.md lacks (or has another version of) the row:\n{row}"
    rows = [line for line in page.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(table)
    # the recipes and console scripts it names exist
    for path in re.findall(r"recipes/skypilot/\w+\.yaml", page):
        assert (ROOT / path).is_file(), path
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"labscale-grid", "labscale-gpu-check"} <= set(scripts)
    assert table.loc[0, "usd"] == pytest.approx(9.95 * 0.32, abs=0.005)  # the study's Falcon fine-tune, Table 3
