"""Every chapter's parameters cell is fully understood by papermill: each assignment is inferred as a parameter, and
passing every parameter (as ``labscale-book -p`` does) logs no "Passed unknown parameter" or "Unable to parse line".

papermill infers parameters line by line and gives up on a line with more than one ``=`` -- including one inside
a trailing comment (``# ... for source="local"``) -- so such a parameter is silently reported as unknown."""

from __future__ import annotations

import ast
import logging

import jupytext
import papermill
import pytest

from labscale.book import CHAPTERS, parameter_names, parameters_cell
from labscale.config import PROJECT_ROOT


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_papermill_recognises_every_parameter(chapter, tmp_path, caplog):
    notebook = jupytext.read(PROJECT_ROOT / CHAPTERS[chapter])
    source = parameters_cell(notebook, chapter).source
    assigned = [
        t.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    ]
    assert assigned, f"{chapter}: the parameters cell assigns nothing"
    assert list(parameter_names(chapter)) == assigned  # what labscale-book -p checks names against
    staged = tmp_path / f"{chapter}.ipynb"
    jupytext.write(notebook, staged)

    caplog.set_level(logging.INFO, logger="papermill")
    inferred = papermill.inspect_notebook(str(staged))
    assert sorted(inferred) == sorted(assigned), f"{chapter}: papermill missed {set(assigned) - set(inferred)}"
    assert not [r for r in caplog.records if "Unable to parse line" in r.getMessage()]

    # every parameter passed with its own default value, through papermill's real parameterize path
    defaults: dict = {}
    exec(compile(source, f"<{chapter} parameters>", "exec"), {}, defaults)  # noqa: S102 - our own notebook
    caplog.clear()
    papermill.execute_notebook(
        str(staged),
        str(tmp_path / f"{chapter}.out.ipynb"),
        parameters=defaults,
        prepare_only=True,
        kernel_name="python3",
        progress_bar=False,
    )
    unknown = [r.getMessage() for r in caplog.records if "unknown parameter" in r.getMessage()]
    assert unknown == [], f"{chapter}: {unknown}"
