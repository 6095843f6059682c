"""One command proving the CUDA paths on a GPU machine: ``labscale-gpu-check`` (or ``python -m labscale.gpu_check``).

Checks, in order, one printed line each (``PASS``, ``SKIP`` with the reason, or ``FAIL`` with the error):

* ``cuda``: a CUDA device (name, compute capability, bf16 support);
* ``qlora-nf4-bf16``: a few QLoRA steps on the embedded model (``paper`` preset: 4-bit NF4, bf16 compute, the paged
  optimiser ``paged_adamw_8bit``) whose training loss falls;
* ``merge``: that adapter merged into its base (:func:`labscale.finetune.merge_adapter`);
* ``generate-4bit``: the embedded model with the adapter generating in 4-bit (``?load_in_4bit=true``);
* ``vllm-adapter``: when vLLM is installed, ``vllm serve`` with the adapter (``--enable-lora``) evaluated through the
  ``openai`` backend, whose adapter-parity gate must pass.

Without a CUDA device every check is skipped and the exit code is 0 (``--require-gpu`` fails the ``cuda`` check). A JSON
record (results, hardware, package versions, commit) goes to ``runs/gpu_check/<timestamp>.json`` or ``--output``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import check_choice
from .records import TRACKED_PACKAGES, git_commit, hardware, package_versions, write_json

STATUSES = ("PASS", "SKIP", "FAIL")
NO_CUDA = "no CUDA device"
BASE = "smollm2-135m"
PROMPTS = ("Name a primary colour.", "What is 2 + 3?")


class Skipped(Exception):
    """A check that cannot run here; the message says why."""


@dataclass
class Result:
    """One check's outcome: ``status`` is one of :data:`STATUSES`, ``detail`` the evidence or the reason."""

    name: str
    status: str
    seconds: float | None
    detail: str

    def __post_init__(self) -> None:
        check_choice("check status", self.status, STATUSES)

    def line(self) -> str:
        """``PASS qlora-nf4-bf16    12.3 s  loss 5.1 -> 1.2``; a skip has no time."""
        took = f"{self.seconds:6.1f} s" if self.seconds is not None else " " * 8
        return f"{self.status} {self.name:<15} {took}  {self.detail}".rstrip()


def check_cuda(state: dict[str, Any]) -> str:
    import torch

    if not torch.cuda.is_available():
        raise Skipped(NO_CUDA)
    major, minor = torch.cuda.get_device_capability(0)
    state["bf16"] = torch.cuda.is_bf16_supported()
    return f"{torch.cuda.get_device_name(0)}, capability {major}.{minor}, bf16 {'yes' if state['bf16'] else 'no'}"


def check_qlora(state: dict[str, Any]) -> str:
    if not state["bf16"]:
        raise Skipped("this GPU has no bf16 (compute capability < 8.0)")
    from .finetune import FinetuneConfig, finetune

    config = FinetuneConfig.preset(
        "paper", max_steps=24, learning_rate=1e-3, warmup_steps=2, train_fraction=0.2, save_steps=12
    )
    result = finetune(BASE, "entity_resolution", config=config, output_dir=state["work"] / "qlora", resume=False)
    resolved = result.model_card["resolved"]
    quant = resolved.get("quantization") or {}
    expected = {"load_in_4bit": True, "precision": "bf16", "optim": "paged_adamw_8bit"}
    got = {k: resolved.get(k) for k in expected}
    if got != expected or quant.get("quant_type") != "nf4" or quant.get("compute_dtype") != "bfloat16":
        raise AssertionError(f"trained with {got}, quantization {quant}; expected {expected}, nf4, bfloat16")
    losses = result.losses
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    if not last < first:
        raise AssertionError(f"loss did not fall: {first:.3f} -> {last:.3f} over {len(losses)} steps")
    state["adapter"] = result.adapter_dir
    return f"loss {first:.2f} -> {last:.2f}, {result.optimizer_steps} steps, peak {result.peak_memory_mb:.0f} MB"


def check_merge(state: dict[str, Any]) -> str:
    from .finetune import merge_adapter

    merged = merge_adapter(_adapter(state), state["work"] / "merged")
    size = sum(f.stat().st_size for f in merged.glob("*.safetensors"))
    return f"{size / 2**20:.0f} MB of merged weights in {merged.name}/"


def check_generate(state: dict[str, Any]) -> str:
    from .backends import Decoding, load_backend

    backend = load_backend(f"{BASE}?load_in_4bit=true&adapter={_adapter(state)}")
    try:
        replies = backend.generate([[{"role": "user", "content": p}] for p in PROMPTS], Decoding(max_new_tokens=16))
        info = backend.runtime_info()
    finally:
        backend.close()
    if not (info["load_in_4bit"] and info["device"] == "cuda"):
        raise AssertionError(f"the backend ran with device={info['device']!r}, load_in_4bit={info['load_in_4bit']}")
    if not all(r.text.strip() for r in replies):
        raise AssertionError(f"empty replies: {[r.text for r in replies]}")
    return f"{len(replies)} replies, {info['torch_dtype']} compute, first: {replies[0].text.strip()[:40]!r}"


def check_vllm(state: dict[str, Any]) -> str:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise Skipped("vllm not installed") from None
    from .backends import Decoding, load_backend
    from .backends.embedded import ensure_converted
    from .backends.served import free_port, wait_until_healthy

    base, adapter, port = ensure_converted(), _adapter(state), free_port()
    command = ["vllm", "serve", str(base), "--port", str(port), "--enable-lora", "--max-lora-rank", "32"]
    command += ["--lora-modules", f"labscale-check={adapter}"]
    log = open(state["work"] / "vllm.log", "w")  # noqa: SIM115 - held open while the server runs
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_until_healthy(f"http://127.0.0.1:{port}/health", server, timeout=600, poll=2):
            raise RuntimeError(f"vllm serve did not answer /health within 600 s (exit code {server.poll()})")
        spec = f"openai:labscale-check?base_url=http://127.0.0.1:{port}/v1&adapter={adapter}&served_base={base}"
        backend = load_backend(spec)  # its parity gate raises AdapterParityError (this check's FAIL) on a mismatch
        replies = backend.generate([[{"role": "user", "content": p}] for p in PROMPTS], Decoding(max_new_tokens=16))
        parity = backend.runtime_info()["adapter_parity"]
        engine = backend.identity()["served_adapter"]
        return (
            f"{len(replies)} replies through vllm {engine['version']}; parity gate passed, agreement with the local "
            f"adapter {parity['mean_agreement']:.2f} on {parity['discriminating']} discriminating prompts"
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


#: the checks in order, each a function of the shared state returning its PASS detail
CHECKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "cuda": check_cuda,
    "qlora-nf4-bf16": check_qlora,
    "merge": check_merge,
    "generate-4bit": check_generate,
    "vllm-adapter": check_vllm,
}


def _adapter(state: dict[str, Any]) -> Path:
    if "adapter" not in state:
        raise Skipped("needs the qlora-nf4-bf16 adapter")
    return state["adapter"]


def run_checks(work: Path, *, require_gpu: bool = False, echo: Callable[[str], None] = print) -> list[Result]:
    """Run :data:`CHECKS` in order with scratch space under ``work``, echoing one line per check."""
    state: dict[str, Any] = {"work": work, "bf16": False}
    results = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            if name != "cuda" and results[0].status != "PASS":
                raise Skipped(NO_CUDA)
            result = Result(name, "PASS", round(time.perf_counter() - started, 1), "")
            result.detail = check(state)
            result.seconds = round(time.perf_counter() - started, 1)
        except Skipped as reason:
            status = "FAIL" if require_gpu and name == "cuda" else "SKIP"
            result = Result(name, status, None, str(reason))
        except Exception as error:  # a check's failure is its result; the others still run
            result = Result(name, "FAIL", round(time.perf_counter() - started, 1), f"{type(error).__name__}: {error}")
        results.append(result)
        echo(result.line())
    return results


def record(results: list[Result], *, require_gpu: bool) -> dict[str, Any]:
    """The JSON record of a run: results, verdict, hardware, package versions and commit."""
    return {
        "kind": "gpu_check",
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "require_gpu": require_gpu,
        "ok": all(r.status != "FAIL" for r in results),
        "checks": [asdict(r) for r in results],
        "hardware": hardware(),
        "packages": package_versions((*TRACKED_PACKAGES, "vllm")),
        "git_commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labscale-gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="the JSON record (default runs/gpu_check/<timestamp>.json)")
    parser.add_argument("--require-gpu", action="store_true", help="fail, rather than skip, without a CUDA device")
    args = parser.parse_args(argv)
    output = args.output or Path("runs") / "gpu_check" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="labscale-gpu-check-") as work:
        results = run_checks(Path(work), require_gpu=args.require_gpu)
    payload = record(results, require_gpu=args.require_gpu)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, payload)
    print(f"record: {output}")
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
