"""The Colab notebooks (``colab/``, ``make colab``): current with their chapters, installing this version of the
package without touching Colab's torch, numpy or pandas, their parameters cell marked, and reached by every launch
link of the book."""

from __future__ import annotations

import ast
import json
import re
import shutil
from urllib.parse import parse_qs, urlparse

import pytest

from labscale import __version__, colab
from labscale.book import CHAPTERS, placeholder_chapter
from labscale.config import PROJECT_ROOT
from labscale.errors import InvalidParameter


def _committed(name: str) -> dict:
    return json.loads((PROJECT_ROOT / colab.notebook_path(name)).read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _install_cell_names_current_version(notebook: dict) -> None:
    first_code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    source = _source(first_code)
    commands = [line for line in source.splitlines() if not line.startswith("#")]
    assert commands[0].startswith("%pip install"), source
    repo = colab.repository()
    assert f'"labscale @ git+{repo["url"]}@v{__version__}"' in source, source


def test_committed_notebooks_are_current():
    out_of_date = colab.stale()
    assert out_of_date == [], f"Colab notebooks out of date for {out_of_date}: run `make colab` and commit colab/"


@pytest.mark.parametrize("name", sorted(CHAPTERS))
def test_install_cell_first_and_parameters_marked(name):
    notebook = _committed(name)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook["metadata"]["accelerator"] == "GPU"
    assert notebook["cells"][0]["cell_type"] == "markdown"
    assert "Runtime → Change runtime type → GPU" in _source(notebook["cells"][0])
    _install_cell_names_current_version(notebook)
    install = _source(next(c for c in notebook["cells"] if c["cell_type"] == "code"))
    for line in install.splitlines():
        if line.startswith(("%pip", "!pip")):
            for package in colab.NEVER_PINNED:
                assert not re.search(rf"(^|\s|\"){package}\s*(==|>=|<=|~=|<|>|@|\s|$)", line.split("install", 1)[1]), (
                    line
                )
    assert "--no-deps " + " ".join(colab.NO_DEPS_WHEELS) in install
    for dataset in colab.chapter_data(name):
        assert dataset in install

    tagged = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    source = _source(tagged[0])
    assert source.splitlines()[0] == colab.EDIT_MARKER
    assigned = {}
    exec(compile(source, f"<{name} parameters>", "exec"), {}, assigned)  # noqa: S102 - our own generated cell
    for parameter, value in colab.COLAB_PARAMETERS[name].items():
        assert assigned[parameter] == value, parameter
    # secrets are read from Colab, never written: no key-like value in the notebook
    text = json.dumps(notebook)
    assert not re.search(r"sk-[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{20,}", text)


def test_every_chapter_has_colab_parameters_and_they_name_real_parameters():
    assert set(colab.COLAB_PARAMETERS) == set(CHAPTERS)
    colab.check_parameters()


def test_a_bad_override_fails_naming_the_valid_parameters():
    source = 'models = ["smollm2-135m"]          # model strings\nlimit = 20  # items\n'
    with pytest.raises(InvalidParameter, match=r"'modles'.*valid: models, limit"):
        colab.set_parameters(source, {"modles": []}, chapter="demo")


def test_colab_parameters_are_validated_against_the_chapter(monkeypatch):
    monkeypatch.setitem(colab.COLAB_PARAMETERS, "cost", {"modles": ["x"]})
    with pytest.raises(InvalidParameter, match=r"cost: no parameter 'modles'.*valid: runs_root, finetune_records"):
        colab.check_parameters()
    with pytest.raises(InvalidParameter, match="modles"):
        colab.colab_notebook("cost")


def test_rewriting_keeps_comments_and_joins_multiline_values():
    source = (
        "limit = 20                         # items per task\n"
        'opts = {"a": 1,\n'
        '        "b": 2}   # whole-sequence loss\n'
        "seed = 0\n"
    )
    out = colab.set_parameters(source, {"limit": None, "opts": {"a": 3}}, chapter="demo")
    assert out.splitlines() == [
        "limit = None                       # items per task",
        'opts = {"a": 3}   # whole-sequence loss',
        "seed = 0",
    ]
    assert ast.literal_eval(out.splitlines()[1].split("=", 1)[1].split("#")[0].strip()) == {"a": 3}


def test_launch_links_point_at_the_committed_notebooks():
    """The links as the theme builds them from _config.yml (the slow test checks a real build agrees)."""
    repo = colab.repository()
    for name in CHAPTERS:
        urls = colab.launch_urls(name)
        assert set(urls) == {"colab", "binder"}
        path = _colab_link_path(urls["colab"], repo)
        assert path == colab.notebook_path(name) and (PROJECT_ROOT / path).is_file()
        assert _binder_link_path(urls["binder"], repo) == path


def _colab_link_path(url: str, repo: dict) -> str:
    org_repo = repo["url"].split("github.com/")[1]
    prefix = f"https://colab.research.google.com/github/{org_repo}/blob/{repo['branch']}/"
    assert url.startswith(prefix), url
    return url.removeprefix(prefix)


def _binder_link_path(url: str, repo: dict) -> str:
    org_repo = repo["url"].split("github.com/")[1]
    parsed = urlparse(url)
    assert (
        f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == f"https://mybinder.org/v2/gh/{org_repo}/{repo['branch']}"
    )
    urlpath = parse_qs(parsed.query)["urlpath"][0]
    return re.sub(r"^(lab/tree|tree)/", "", urlpath)


@pytest.mark.slow
def test_built_book_launch_links_resolve_to_generated_notebooks(tmp_path):
    """Build a book with the project's _config.yml and _toc.yml (placeholder chapter pages) and follow every launch
    link of every chapter page to a committed Colab notebook that installs the current version."""
    from labscale.book import build_html

    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    for page in [*(PROJECT_ROOT / "book").glob("*.md"), PROJECT_ROOT / "book" / "references.bib"]:
        shutil.copy(page, tmp_path / "book" / page.name)
    for name in CHAPTERS:
        placeholder_chapter(name, ["a dataset"], output=tmp_path / "book" / "chapters" / f"{name}.ipynb")
    html = build_html(tmp_path)

    repo = colab.repository()
    for name in CHAPTERS:
        page = (html / f"{colab.chapter_page(name)}.html").read_text(encoding="utf-8")
        colab_links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page))
        binder_links = set(re.findall(r'href="(https://mybinder\.org/[^"]+)"', page))
        assert len(colab_links) == 1 and len(binder_links) == 1, (name, colab_links, binder_links)
        (colab_link,), (binder_link,) = colab_links, binder_links
        assert {"colab": colab_link, "binder": binder_link.replace("&amp;", "&")} == colab.launch_urls(name)
        path = _colab_link_path(colab_link, repo)
        assert _binder_link_path(binder_link.replace("&amp;", "&"), repo) == path
        notebook = PROJECT_ROOT / path
        assert notebook.is_file(), f"{name}: the launch link points at {path}, which is not in the repository"
        _install_cell_names_current_version(json.loads(notebook.read_text(encoding="utf-8")))
    # pages that are not notebooks get no launch button
    assert "colab.research.google.com" not in (html / "book" / "rerun.html").read_text(encoding="utf-8")
