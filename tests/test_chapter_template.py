"""Every chapter follows the house template (CONTRIBUTING.md, notebooks/_template.md), checked without executing
anything: the notebooks are parsed with jupytext.

For each chapter, and for the template itself: a label ``(name)=`` right before the ``#`` title; an "Overview"
section first, with "What you will learn", "Prerequisites" and a "**Time:**" line naming CPU and GPU; exactly one
code cell tagged ``parameters``, before every other code cell; a "Provenance" section that calls
``report.provenance`` (no cell reads a manifest by hand); a "Summary" section with "What's next?"; an
"Exercises" section after it with two to four ``{exercise}`` directives, each with a ``{solution}`` folded as a
dropdown, at least one of which changes a parameter and asks the reader to predict the result; a last
"References" section holding a ``{bibliography}`` filtered to the page's citations; every ``{cite}`` key defined in
book/references.bib; no author-year citation left as plain text; and every cell that makes a figure has a caption
and a name in its ``mystnb.figure`` metadata, so the text can ``{numref}`` it. Exercise labels are unique across the
book. The book's configuration lists every chapter, the references page and the bibliography, loads
sphinx-exercise, and keeps the template out."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
import yaml

from labscale.book import CHAPTERS
from labscale.config import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
TEMPLATE = NOTEBOOKS / "_template.md"
BIB = PROJECT_ROOT / "book" / "references.bib"
PAGES = sorted((PROJECT_ROOT / "book").glob("*.md"))

#: a cite role and its keys: {cite}`a`, {cite:p}`a,b`, {cite:t}`{see}a{p. 3}` (pre- and post-text in braces)
CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
#: a cross-reference to a figure: {numref}`fig-x` or {numref}`Figure %s <fig-x>`
NUMREF_RE = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`>]+)>?`")
#: citations written out as text: any "et al.", "Name and Name 2018", "Name & Name (2018)", "(Name, 2018)"
INLINE_CITATION_RES = (
    re.compile(r"\bet\s+al\b"),
    re.compile(r"\b[A-Z][\w'\-]+\s+(?:and|&)\s+[A-Z][\w'\-]+,?\s+\(?(?:19|20)\d\d\b"),
    re.compile(r"\(\s*[A-Z][\w'\-]+,\s+(?:19|20)\d\d[a-z]?\s*\)"),
)
#: a code cell that makes a figure: assigns a figure, opens one with pyplot, or calls a labscale.plots function
FIGURE_RE = re.compile(r"^\s*fig\w*\s*(?:,[^=\n]*)?=|plt\.(?:subplots|figure)\(|\bplots\.[a-z_]+\(", re.M)
HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
#: a sphinx-exercise directive in a colon fence: ":::{exercise} Title" or ":::{solution} label", options, body, ":::"
DIRECTIVE_RE = re.compile(r"^(:{3,})\{(exercise|solution)\}[ \t]*(.*?)[ \t]*\n(.*?)^\1[ \t]*$", re.M | re.S)
#: an assignment in the parameters cell: the parameter's name
PARAMETER_RE = re.compile(r"^([A-Za-z_]\w*)\s*=", re.M)


def _read(path: Path):
    return jupytext.read(path)


def _markdown(notebook) -> list[str]:
    return [c.source for c in notebook.cells if c.cell_type == "markdown"]


def _strip_code(text: str) -> str:
    """Markdown without fenced blocks (directives included), inline code and cite/ref roles: the prose."""
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"\{[a-z:]+\}`[^`]*`", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


def _headings(notebook) -> list[tuple[int, str, int]]:
    """(level, title, cell index) of every markdown heading outside fenced blocks, in order."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", cell.source, flags=re.S | re.M)
        for line in text.splitlines():
            if m := HEADING_RE.match(line):
                found.append((len(m.group(1)), m.group(2), index))
    return found


def _section(notebook, title: str) -> str:
    """The markdown of the ``##`` section called ``title``, up to the next ``##`` heading."""
    out, inside = [], False
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            m = HEADING_RE.match(line)
            if m and len(m.group(1)) <= 2:
                inside = len(m.group(1)) == 2 and m.group(2) == title
                continue
            if inside:
                out.append(line)
    return "\n".join(out)


def _bib_keys() -> list[str]:
    return re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", BIB.read_text(), flags=re.M)


def _cite_keys(text: str) -> list[str]:
    keys = []
    for group in CITE_RE.findall(text):
        for key in re.sub(r"\{[^}]*\}", "", group).split(","):
            if key.strip():
                keys.append(key.strip())
    return keys


def _figure_cells(notebook) -> list:
    return [c for c in notebook.cells if c.cell_type == "code" and FIGURE_RE.search(c.source)]


def _directives(text: str) -> list[dict]:
    """The ``{exercise}`` and ``{solution}`` colon-fence directives of ``text``: kind, argument, options, body."""
    found = []
    for m in DIRECTIVE_RE.finditer(text):
        lines = m.group(4).splitlines()
        options = {}
        while lines and (o := re.match(r"^:([\w-]+):\s*(.*?)\s*$", lines[0])):
            options[o.group(1)] = o.group(2)
            lines.pop(0)
        found.append({"kind": m.group(2), "argument": m.group(3), "options": options, "body": "\n".join(lines)})
    return found


def _code_in(text: str) -> str:
    """The inline code spans and fenced code blocks of ``text``, joined: where parameters are named."""
    blocks = re.findall(r"^(`{3,}).*?\n(.*?)^\1\s*$", text, flags=re.S | re.M)
    prose = re.sub(r"^(`{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    return "\n".join([*(b for _, b in blocks), *re.findall(r"`([^`\n]+)`", prose)])


def _exercises(notebook) -> list[dict]:
    return _directives(_section(notebook, "Exercises"))


def _all_notebooks() -> list[Path]:
    return [PROJECT_ROOT / CHAPTERS[name] for name in sorted(CHAPTERS)] + [TEMPLATE]


@pytest.fixture(scope="module")
def bib_keys() -> set[str]:
    keys = _bib_keys()
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"book/references.bib defines these keys twice: {duplicates}"
    return set(keys)


@pytest.mark.parametrize("path", _all_notebooks(), ids=lambda p: p.stem)
def test_chapter_follows_the_template(path, bib_keys):
    nb = _read(path)
    name = path.stem
    where = f"notebooks/{path.name}"

    # label, then the title
    first = next(c.source for c in nb.cells if c.cell_type == "markdown")
    lines = [line for line in first.splitlines() if line.strip()]
    assert lines and re.fullmatch(r"\([a-z0-9-]+\)=", lines[0]), f"{where}: no (label)= before the title"
    assert lines[1].startswith("# "), f"{where}: the label must come right before the # title"
    expected = "chapter-template" if path == TEMPLATE else name.replace("_", "-")
    assert lines[0] == f"({expected})=", f"{where}: the label should be ({expected})="
    headings = _headings(nb)
    assert [h for h in headings if h[0] == 1] == [(1, lines[1][2:].strip(), 0)], f"{where}: one # title, on top"

    # the section skeleton: Overview first, ..., Provenance, Summary (What's next?), References last
    sections = [title for level, title, _ in headings if level == 2]
    assert sections and sections[0] == "Overview", f"{where}: the first ## section must be Overview, got {sections}"
    for required in ("Parameters", "Provenance", "Summary", "References"):
        assert required in sections, f"{where}: no ## {required} section (sections: {sections})"
    assert sections[-1] == "References", f"{where}: References must be the last section"
    assert sections.index("Provenance") < sections.index("Summary"), f"{where}: Provenance goes before Summary"
    assert "What's next?" in _section(nb, "Summary"), f"{where}: the Summary needs a ### What's next?"
    assert "Exercises" in sections and sections[-2] == "Exercises", (
        f"{where}: ## Exercises goes after the Summary, right before References (sections: {sections})"
    )
    assert sections.index("Summary") < sections.index("Exercises"), f"{where}: Summary goes before Exercises"

    overview = _section(nb, "Overview")
    for part in ("What you will learn", "Prerequisites"):
        assert part in overview, f"{where}: the Overview has no {part!r}"
    time_lines = [p for p in re.split(r"\n\s*\n", overview) if p.lstrip().startswith("**Time:**")]
    assert len(time_lines) == 1, f"{where}: the Overview needs one paragraph starting **Time:**"
    assert re.search(r"\d", time_lines[0]) and "CPU" in time_lines[0] and "GPU" in time_lines[0], (
        f"{where}: the Time line must give a CPU time and say what is known for one GPU: {time_lines[0]!r}"
    )

    # exactly one parameters cell, the first code cell (papermill injects its values right after it)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{where}: {len(tagged)} cells tagged parameters, expected 1"
    assert code[0] is tagged[0], f"{where}: the parameters cell must be the first code cell"

    # provenance is one library call; nothing reads a record's files by hand
    assert any("report.provenance(" in c.source for c in code), f"{where}: Provenance must call report.provenance"
    for c in code:
        assert "manifest.json" not in c.source, f"{where}: a cell reads manifest.json by hand:\n{c.source}"

    # the references block: the page's own citations, in the last section
    references = _section(nb, "References")
    assert re.search(r"```\{bibliography\}\s*\n:filter: docname in docnames\s*\n```", references), (
        f"{where}: ## References must hold a {{bibliography}} block with ':filter: docname in docnames'"
    )

    # citations: every key defined, none written out by hand
    captions = [str(c.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")) for c in code]
    prose = _markdown(nb) + captions
    keys = [k for text in prose for k in _cite_keys(text)]
    assert keys, f"{where}: cites nothing; the study at least is cited with {{cite}}"
    missing = sorted(set(keys) - bib_keys)
    assert not missing, f"{where}: cite keys not in book/references.bib: {missing}"
    for text in prose:
        stripped = _strip_code(text)
        for pattern in INLINE_CITATION_RES:
            if hit := pattern.search(stripped):
                context = stripped[max(hit.start() - 60, 0) : hit.end() + 20]
                pytest.fail(f"{where}: a citation written as text, {hit.group(0)!r} in {context!r}: use {{cite}}")

    # figures: every figure cell has a caption and a name; every {numref} names one of them
    names = []
    for cell in _figure_cells(nb):
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        assert isinstance(figure.get("caption"), str) and figure["caption"].strip(), (
            f"{where}: figure cell without a caption:\n{cell.source}"
        )
        assert isinstance(figure.get("name"), str) and re.fullmatch(r"fig-[a-z0-9-]+", figure["name"]), (
            f"{where}: figure cell without a name fig-...:\n{cell.source}"
        )
        names.append(figure["name"])
    assert len(names) == len(set(names)), f"{where}: figure names repeat: {names}"
    refs = [r for text in _markdown(nb) for r in NUMREF_RE.findall(text)]
    assert set(refs) <= set(names), f"{where}: {{numref}} to unknown figures {sorted(set(refs) - set(names))}"


@pytest.mark.parametrize("path", _all_notebooks(), ids=lambda p: p.stem)
def test_chapter_ends_with_exercises_and_folded_solutions(path):
    nb = _read(path)
    where = f"notebooks/{path.name}"
    prefix = "chapter-template" if path == TEMPLATE else path.stem.replace("_", "-")
    found = _exercises(nb)
    exercises = [d for d in found if d["kind"] == "exercise"]
    solutions = [d for d in found if d["kind"] == "solution"]
    assert 2 <= len(exercises) <= 4, f"{where}: ## Exercises holds {len(exercises)} exercises, expected 2 to 4"
    # every directive of the page is in the Exercises section
    everywhere = _directives("\n".join(_markdown(nb)))
    assert len(everywhere) == len(found), f"{where}: an {{exercise}} or {{solution}} outside ## Exercises"

    labels = [d["options"].get("label") for d in exercises]
    for label, exercise in zip(labels, exercises, strict=True):
        assert label and re.fullmatch(rf"{prefix}-ex-\d+", label), (
            f"{where}: exercise {exercise['argument']!r} needs ':label: {prefix}-ex-<n>', got {label!r}"
        )
        assert exercise["argument"].strip(), f"{where}: exercise {label} has no title"
        assert exercise["body"].strip(), f"{where}: exercise {label} is empty"
    assert len(labels) == len(set(labels)), f"{where}: exercise labels repeat: {labels}"

    # one folded solution per exercise, matched by label
    targets = [d["argument"] for d in solutions]
    assert sorted(targets) == sorted(labels), f"{where}: solutions {targets} do not match the exercises {labels}"
    for solution in solutions:
        assert solution["options"].get("class") == "dropdown", (
            f"{where}: the solution of {solution['argument']} must be hidden by default (':class: dropdown')"
        )
        assert solution["body"].strip(), f"{where}: the solution of {solution['argument']} is empty"

    # at least one exercise changes a parameter of the parameters cell and asks for a prediction first
    cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))
    parameters = set(PARAMETER_RE.findall(cell.source))
    predicting = [
        e["options"]["label"]
        for e in exercises
        if re.search(r"\bpredict", e["body"], re.I)
        and any(re.search(rf"\b{re.escape(name)}\b", _code_in(e["body"])) for name in parameters)
    ]
    assert predicting, (
        f"{where}: no exercise names a parameter of the parameters cell ({sorted(parameters)}) in code and asks the "
        "reader to predict the result"
    )


def test_exercise_labels_are_unique_across_the_book():
    labels = [
        d["options"].get("label")
        for path in _all_notebooks()
        for d in _exercises(_read(path))
        if d["kind"] == "exercise"
    ]
    repeated = sorted({v for v in labels if labels.count(v) > 1})
    assert not repeated, f"exercise labels used twice (Sphinx targets are global): {repeated}"


def test_labels_and_figure_names_are_unique_across_the_book():
    labels, names = [], []
    for path in _all_notebooks():
        nb = _read(path)
        labels += re.findall(r"^\(([a-z0-9-]+)\)=\s*$", "\n".join(_markdown(nb)), flags=re.M)
        names += [c.metadata.get("mystnb", {}).get("figure", {}).get("name") for c in _figure_cells(nb)]
    names = [n for n in names if n]  # a figure without a name fails test_chapter_follows_the_template
    for kind, values in (("label", labels), ("figure name", names)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        assert not repeated, f"{kind}s used twice (Sphinx targets are global): {repeated}"


def test_pages_cite_known_keys_and_every_entry_is_cited(bib_keys):
    for page in PAGES:
        text = page.read_text()
        missing = sorted(set(_cite_keys(text)) - bib_keys)
        assert not missing, f"{page.name}: cite keys not in book/references.bib: {missing}"
    # the references page lists the whole file (:all:), so every entry must be cited somewhere
    cited = {k for path in [*PAGES, *NOTEBOOKS.glob("*.md")] for k in _cite_keys(path.read_text())}
    assert not sorted(bib_keys - cited), f"book/references.bib entries nothing cites: {sorted(bib_keys - cited)}"


def test_the_book_lists_every_chapter_and_keeps_the_template_out():
    chapters = sorted(p.stem for p in NOTEBOOKS.glob("*.md") if not p.name.startswith("_"))
    assert chapters == sorted(CHAPTERS), f"notebooks/ and labscale.book.CHAPTERS differ: {chapters}"
    assert all(CHAPTERS[name] == f"notebooks/{name}.md" for name in CHAPTERS)
    assert TEMPLATE.is_file() and "_template" not in CHAPTERS

    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    files = [entry["file"] for part in toc["parts"] for entry in part["chapters"]]
    for name in CHAPTERS:
        assert f"book/chapters/{name}" in files, f"_toc.yml does not list the {name} chapter"
    assert "book/references" in files and (PROJECT_ROOT / "book" / "references.md").is_file()
    assert not [f for f in files if "template" in f], "the template is not a chapter of the book"

    config = yaml.safe_load((PROJECT_ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True and "notebooks/*" in config["exclude_patterns"]
    assert config["bibtex_bibfiles"] == ["book/references.bib"] and BIB.is_file()
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"], "_config.yml does not load sphinx-exercise"
    assert ":all:" in (PROJECT_ROOT / "book" / "references.md").read_text()
