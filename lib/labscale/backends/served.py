"""LoRA adapters served by an inference engine (vLLM), and the parity gate that runs before they are evaluated.

A vLLM server started with ``vllm serve <base> --enable-lora --lora-modules fc=runs/adapters/.../adapter`` answers
requests for the model ``fc`` with the adapter applied. The OpenAI-compatible backend reaches it with::

    openai:fc?base_url=http://127.0.0.1:8000/v1&adapter=runs/adapters/smollm2-135m/fact_checking/adapter

``adapter`` is the local copy of the adapter the server was given. With it the backend's identity, and so every
cache key and run record, holds the serving engine and its version (vLLM's ``GET /version``; a server without one
is named with ``engine=NAME/VERSION``), the served name and the SHA-256 of the adapter's weights: transformers and
vLLM produce different numbers, and a swapped adapter never meets another adapter's cached replies.

**The parity gate.** vLLM can silently answer with the base model (an adapter whose target modules it does not
support, a ``--lora-modules`` name that points elsewhere). Before the first request that the cache cannot answer,
:func:`check_parity` sends :data:`PARITY_PROMPTS` greedily to the served adapter and to the served base model
(``served_base``, else the adapter's ``parent`` in vLLM's ``/v1/models``), and generates the same prompts locally
with transformers + peft, with and without the adapter. It passes when

1. the local adapter answers differently from the local base on at least one prompt ("discriminating" prompts:
   without one the prompts cannot tell the adapter from its base);
2. on the discriminating prompts, the served adapter is closer to the local adapter than to the local base on at
   least half of them, and differs from the served base on at least one: a server answering with the base model
   fails here;
3. over all prompts, the served adapter's replies agree with the local adapter's to :data:`PARITY_TOLERANCE` or
   more (mean word-prefix agreement, :func:`prefix_agreement`): greedy replies of two engines share a prefix and
   drift apart once a near-tie rounds differently, so the tolerance is on how long they agree, not on equality.

Otherwise :class:`~labscale.errors.AdapterParityError` stops the run with the reason. The gate's outcome is in the
run manifest (``hardware.adapter_parity``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterParityError, InvalidParameter

#: fixed greedy prompts of the gate: short, varied, and long enough replies for two engines to drift apart
PARITY_PROMPTS: tuple[str, ...] = (
    "Is the following claim supported? Claim: Global sea level rose about 20 cm in the 20th century.",
    "Do these two records describe the same entity? A: Sony Bravia 40in LCD TV. B: Sony KDL-40 Bravia television.",
    "Summarize in one sentence: the patient reports a dry cough for two weeks and mild fever at night.",
    "Write a SQL query that counts the singers in the table singer.",
    "Name three primary colours.",
    "What is the capital of France? Answer in one word.",
)
PARITY_MAX_NEW_TOKENS = 24
#: the least mean word-prefix agreement between the served and the local adapter's replies
PARITY_TOLERANCE = 0.6


def prefix_agreement(a: str, b: str) -> float:
    """How long two replies agree: the words of their common prefix over the longer reply's words (1.0 when both
    are empty)."""
    wa, wb = a.split(), b.split()
    if not wa and not wb:
        return 1.0
    common = 0
    for x, y in zip(wa, wb, strict=False):
        if x != y:
            break
        common += 1
    return common / max(len(wa), len(wb))


@dataclass
class ParityReport:
    """The parity gate's evidence: every reply, the agreements and the verdict."""

    passed: bool
    reason: str
    tolerance: float
    mean_agreement: float  # served adapter vs local adapter, over all prompts
    discriminating: int  # prompts on which the local adapter and the local base differ
    closer_to_adapter: int  # of those, where the served adapter is closer to the local adapter than to the base
    differs_from_served_base: int  # of those, where the served adapter and the served base differ
    replies: dict[str, list[str]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_parity(
    served_adapter: Sequence[str],
    served_base: Sequence[str],
    local_adapter: Sequence[str],
    local_base: Sequence[str],
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """The gate's verdict on four lists of replies to the same prompts (see the module docstring)."""
    n = len(served_adapter)
    if not n or any(len(r) != n for r in (served_base, local_adapter, local_base)):
        raise InvalidParameter("the parity gate needs the same non-zero number of replies from all four models")
    discriminating = [i for i in range(n) if local_adapter[i] != local_base[i]]
    closer = sum(
        prefix_agreement(served_adapter[i], local_adapter[i]) > prefix_agreement(served_adapter[i], local_base[i])
        for i in discriminating
    )
    differs = sum(served_adapter[i] != served_base[i] for i in discriminating)
    mean = sum(prefix_agreement(s, t) for s, t in zip(served_adapter, local_adapter, strict=True)) / n
    if not discriminating:
        failure = (
            f"the local adapter answers all {n} parity prompts exactly as its base model does, so they cannot tell "
            "a served adapter from the base"
        )
    elif differs == 0 or 2 * closer < len(discriminating):
        failure = (
            f"the server appears to answer with the base model (or another adapter): on the {len(discriminating)} "
            f"prompts where the adapter changes the local reply, the served adapter is closer to the adapter on "
            f"{closer} and differs from the served base on {differs}; check the --lora-modules path and that the "
            "adapter's target modules are ones the engine supports"
        )
    elif mean < tolerance:
        failure = (
            f"the served adapter agrees with the local peft adapter on {mean:.2f} of each reply on average, below "
            f"the tolerance of {tolerance}: the server holds other weights under this name"
        )
    else:
        failure = None
    reason = failure or (
        f"served adapter agrees with the local adapter at {mean:.2f} (tolerance {tolerance}) and differs "
        f"from the base on {differs} of {len(discriminating)} discriminating prompts"
    )
    return ParityReport(
        failure is None,
        reason,
        tolerance,
        round(mean, 4),
        len(discriminating),
        closer,
        differs,
        {
            "served_adapter": list(served_adapter),
            "served_base": list(served_base),
            "local_adapter": list(local_adapter),
            "local_base": list(local_base),
        },
    )


# -- the served adapter's identity -------------------------------------------------------------------------------


def adapter_weights(adapter_dir: str | Path) -> Path:
    """The weights file of a local adapter folder; :class:`InvalidParameter` when there is none."""
    from ..finetune.adapter import ADAPTER_WEIGHTS

    path = Path(adapter_dir)
    for name in ADAPTER_WEIGHTS:
        if (path / name).is_file():
            return path / name
    raise InvalidParameter(
        f"adapter={str(adapter_dir)!r} must be the local folder of the adapter the server serves, holding one of "
        f"{', '.join(ADAPTER_WEIGHTS)}; it has none"
    )


def server_root(base_url: str) -> str:
    """The server's root URL: ``base_url`` without its trailing ``/v1``."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server started next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float, *, poll: float = 0.25) -> bool:
    """Whether the server ``process`` answered 200 at ``url`` (its ``/health``) within ``timeout`` seconds; False as
    soon as the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(poll)
    return False


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def check_engine(declared: str) -> tuple[str, str]:
    """``NAME/VERSION`` split in two; :class:`InvalidParameter` for any other form."""
    name, _, version = str(declared).partition("/")
    if not name or not version or "/" in version:
        raise InvalidParameter(f"engine must be NAME/VERSION (e.g. transformers-serve/5.23.0), got {declared!r}")
    return name, version


def serving_engine(base_url: str, declared: str | None = None, *, timeout: float = 10.0) -> dict[str, str]:
    """``{"engine": name, "version": version}`` of the server at ``base_url``: vLLM's ``GET /version``, else the
    ``engine=NAME/VERSION`` option. A declaration that contradicts the server, or neither, is refused."""
    version = None
    try:
        answer = _get_json(server_root(base_url) + "/version", timeout)
        version = answer.get("version") if isinstance(answer, dict) else None
    except (OSError, ValueError):  # URLError and timeouts are OSErrors
        pass
    if declared is not None:
        name, declared_version = check_engine(declared)
        if version is not None and (name != "vllm" or declared_version != version):
            raise InvalidParameter(f"engine={declared!r} contradicts the server at {base_url}: vllm/{version}")
        return {"engine": name, "version": declared_version}
    if version is None:
        raise InvalidParameter(
            f"the server at {base_url} does not report its version (GET /version, as vLLM does): name the engine "
            "serving the adapter with the model option engine=NAME/VERSION (e.g. engine=transformers-serve/5.23.0)"
        )
    return {"engine": "vllm", "version": str(version)}


def served_parent(base_url: str, model: str, *, timeout: float = 10.0) -> str | None:
    """The base model a vLLM server lists as the ``parent`` of the served adapter ``model`` (None if unknown)."""
    try:
        listing = _get_json(base_url + "/models", timeout)
    except (OSError, ValueError):  # URLError and timeouts are OSErrors
        return None
    for entry in listing.get("data", []) if isinstance(listing, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == model and entry.get("parent"):
            return str(entry["parent"])
    return None


def local_reference(adapter_dir: str | Path) -> str:
    """The labscale model string of the adapter's base model, from its card (else its ``adapter_config.json``)."""
    from ..finetune.adapter import CARD_FILE

    path = Path(adapter_dir)
    card = path / CARD_FILE
    if card.is_file():
        spec = json.loads(card.read_text()).get("base_model", {}).get("spec")
        if spec:
            return str(spec)
    named = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not named:
        raise AdapterParityError(f"adapter {str(path)!r} names no base model: the parity gate has no local reference")
    return f"hf:{named}"


def check_parity(backend: Any) -> ParityReport:
    """Run the parity gate for an OpenAI-compatible ``backend`` serving an adapter; raise
    :class:`~labscale.errors.AdapterParityError` with the reason when it fails."""
    from . import parse_model_spec
    from .base import Decoding
    from .hf import HFBackend

    decoding = Decoding(max_new_tokens=PARITY_MAX_NEW_TOKENS, temperature=0.0, seed=0)
    conversations = [[{"role": "user", "content": p}] for p in PARITY_PROMPTS]
    served_base_name = backend.served_base or served_parent(backend.base_url, backend.model_id)
    if not served_base_name:
        raise AdapterParityError(
            f"the parity gate needs the base model's name on {backend.base_url}: the server lists no parent for "
            f"{backend.model_id!r}; add the model option served_base=NAME"
        )
    with ThreadPoolExecutor(max_workers=backend.concurrency) as pool:  # the backend's concurrency: vLLM batches them
        served_adapter = list(pool.map(lambda c: backend.complete(c, decoding), conversations))
        served_base = list(pool.map(lambda c: backend.complete(c, decoding, model=served_base_name), conversations))
    base_spec = parse_model_spec(local_reference(backend.adapter))
    local = {}
    for name, spec in (("adapter", base_spec.with_adapter(backend.adapter)), ("base", base_spec)):
        model = HFBackend.from_spec(spec, cache=backend.cache)  # fp32: the reference precision
        try:
            local[name] = [g.text for g in model.generate(conversations, decoding, progress=False)]
        finally:
            model.close()
    report = judge_parity(served_adapter, served_base, local["adapter"], local["base"])
    if not report.passed:
        raise AdapterParityError(
            f"adapter parity gate failed for {backend.model_id!r} at {backend.base_url}: {report.reason}", report
        )
    return report


__all__ = [
    "PARITY_PROMPTS",
    "PARITY_TOLERANCE",
    "ParityReport",
    "check_parity",
    "free_port",
    "judge_parity",
    "prefix_agreement",
    "serving_engine",
    "wait_until_healthy",
]
