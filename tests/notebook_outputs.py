"""Reading an executed chapter notebook back in the end-to-end tests: its code-cell outputs and their text."""

from __future__ import annotations

import nbformat


def executed_outputs(path) -> tuple[list, str]:
    """Every code-cell output of the executed notebook at ``path`` (errors included, for the caller to assert
    against) and their plain text, HTML and stream text joined into one string."""
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(
        o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/html", "") + o.get("text", "")
        for o in outputs
    )
    return outputs, text
