"""The embedded model's one-time conversion (GGUF -> Hugging Face folder) when several processes need it at once, as
the kernels of a book build that runs chapters in parallel do on a fresh machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

CONVERT = """
from labscale.backends import embedded
target = embedded.ensure_converted()
print(target, (target / "gguf.sha256").stat().st_ino, (target / "config.json").is_file())
"""


def test_processes_converting_at_once_share_one_conversion(tmp_path, embedded_model_dir):
    env = {**os.environ, "LABSCALE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen([sys.executable, "-c", CONVERT], env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [child.communicate(timeout=600)[0].split() for child in children]
    assert [child.returncode for child in children] == [0, 0, 0]
    # the same folder, written once: one marker file (inode) seen by all three, complete
    assert len({(folder, inode) for folder, inode, _ in outputs}) == 1 and all(ok == "True" for *_, ok in outputs)
    models = tmp_path / "home" / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["SmolLM2-135M-Instruct"]
