"""Start and stop a real OpenAI-compatible server (``transformers serve``) on 127.0.0.1 for tests.

Known quirks of ``transformers serve`` 5.23 handled here:

* ``GET /v1/models`` answers 500 (``CacheNotFound``) unless the Hugging Face hub cache folder exists, so the
  server gets ``HF_HUB_CACHE`` pointing at an existing (empty) folder; readiness is polled on ``/health``.
* With a model given on the command line (``FORCE_MODEL``) the server is pinned to it and answers 400 to any
  other ``model`` name: requests must use the folder path exactly as passed (:attr:`LocalServer.model`).
  Replies report ``model`` as ``<path>@main``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from labscale.backends.served import free_port, wait_until_healthy


class LocalServer:
    """``transformers serve [<model_dir>] --device cpu`` in a subprocess, with its log in ``workdir``."""

    def __init__(self, model_dir: str | Path | None, workdir: str | Path, *, startup_timeout: float = 180.0):
        #: None: not pinned, the server loads whichever local folder a request names as its model
        self.model = None if model_dir is None else str(model_dir)
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def _command(self) -> list[str]:
        cli = Path(sys.executable).with_name("transformers")
        prefix = (
            [str(cli)]
            if cli.exists()
            else [
                sys.executable,
                "-c",
                "import sys; from transformers.cli.transformers import main; "
                "sys.argv[0] = 'transformers'; sys.exit(main())",
            ]
        )
        return prefix + [
            "serve",
            *([self.model] if self.model is not None else []),
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "info",
        ]

    def _env(self) -> dict[str, str]:
        hub_cache = self.workdir / "hf-hub-cache"
        hub_cache.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(
            HF_HUB_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HUB_CACHE=str(hub_cache),
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, attempts: int = 3) -> LocalServer:
        """Start the server and wait until ``/health`` answers 200 (another port if the first was taken)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            self.port = free_port()
            with open(self.log_path, "wb") as log_file:
                self.process = subprocess.Popen(
                    self._command(),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self._env(),
                    cwd=self.workdir,
                )
            if self._wait_ready():
                return self
            log_text = self.log()
            self.stop()
            if "address already in use" in log_text.lower() and attempt + 1 < attempts:
                continue
            raise RuntimeError(
                f"transformers serve did not become ready within {self.startup_timeout:.0f} s "
                f"(exit code {self.process.returncode}); its log:\n{log_text}"
            )
        raise AssertionError("unreachable")

    def _wait_ready(self) -> bool:
        return wait_until_healthy(f"http://127.0.0.1:{self.port}/health", self.process, self.startup_timeout)

    def stop(self, grace: float = 15.0) -> None:
        """Terminate the server, then kill it if it has not exited after ``grace`` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
