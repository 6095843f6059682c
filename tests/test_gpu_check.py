"""The GPU check command on a machine without CUDA (this one): every CUDA check skipped with its reason, a record
written, exit 0; ``--require-gpu`` fails. On a GPU machine the same command runs the checks themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labscale.errors import InvalidParameter
from labscale.gpu_check import CHECKS, NO_CUDA, Result, record, run_checks

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["cuda", "qlora-nf4-bf16", "merge", "generate-4bit", "vllm-adapter"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labscale.gpu_check", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_checks_are_the_issue_s_five_in_order():
    assert list(CHECKS) == NAMES


def test_result_lines():
    assert Result("qlora-nf4-bf16", "PASS", 12.34, "loss 5.1 -> 1.2").line() == (
        "PASS qlora-nf4-bf16    12.3 s  loss 5.1 -> 1.2"
    )
    assert Result("vllm-adapter", "SKIP", None, "vllm not installed").line() == (
        "SKIP vllm-adapter" + " " * 14 + "vllm not installed"  # the time column left blank
    )
    with pytest.raises(InvalidParameter, match=r"'OK'; valid choices: 'PASS', 'SKIP', 'FAIL'"):
        Result("cuda", "OK", None, "")


@no_cuda
def test_without_cuda_every_check_is_skipped_with_the_reason(tmp_path):
    lines = []
    results = run_checks(tmp_path, echo=lines.append)
    assert [(r.name, r.status, r.detail, r.seconds) for r in results] == [(n, "SKIP", NO_CUDA, None) for n in NAMES]
    assert lines == [r.line() for r in results] and all(line.endswith("no CUDA device") for line in lines)
    payload = record(results, require_gpu=False)
    assert payload["ok"] is True and payload["hardware"]["cuda"] is False
    assert payload["packages"]["torch"] == torch.__version__ and "vllm" in payload["packages"]
    assert [c["name"] for c in payload["checks"]] == NAMES


@no_cuda
def test_require_gpu_fails_the_cuda_check_only(tmp_path):
    results = run_checks(tmp_path, require_gpu=True, echo=lambda line: None)
    assert [r.status for r in results] == ["FAIL", "SKIP", "SKIP", "SKIP", "SKIP"]
    assert record(results, require_gpu=True)["ok"] is False


@no_cuda
@pytest.mark.slow
def test_the_command_prints_one_line_per_check_and_writes_the_record(tmp_path):
    out = run("--output", str(tmp_path / "check.json"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["SKIP", n] for n in NAMES]
    assert all(line.endswith("  no CUDA device") for line in lines[:-1])
    assert lines[-1] == f"record: {tmp_path / 'check.json'}"
    saved = json.loads((tmp_path / "check.json").read_text())
    assert saved["kind"] == "gpu_check" and saved["ok"] is True and saved["require_gpu"] is False
    assert [(c["name"], c["status"], c["detail"]) for c in saved["checks"]] == [(n, "SKIP", NO_CUDA) for n in NAMES]
    assert saved["hardware"]["cuda"] is False and saved["packages"]["labscale"]

    default = run(cwd=tmp_path)  # no --output: runs/gpu_check/<timestamp>.json under the working directory
    assert default.returncode == 0, default.stderr
    written = list((tmp_path / "runs" / "gpu_check").glob("*.json"))
    assert len(written) == 1 and default.stdout.splitlines()[-1] == f"record: {written[0].relative_to(tmp_path)}"


@no_cuda
@pytest.mark.slow
def test_the_command_with_require_gpu_exits_nonzero(tmp_path):
    out = run("--require-gpu", "--output", str(tmp_path / "check.json"), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.splitlines()[0].split() == ["FAIL", "cuda", "no", "CUDA", "device"]
    saved = json.loads((tmp_path / "check.json").read_text())
    assert saved["ok"] is False and saved["checks"][0]["status"] == "FAIL"
