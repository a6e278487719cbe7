"""The peer: Infinity (PyPI ``infinity-emb``) serving a local cross-encoder directory, started from a
venv of its own (``benchmarks/setup_infinity.sh`` builds it) on a free loopback port, offline, and
stopped by its pid.

It runs as docs/benchmark-method.md describes the peer: ``infinity_emb v2 --engine torch --device
cpu --dtype DTYPE --no-vector-disk-cache`` (the disk cache would answer the benchmark's repeated
requests). Its ``POST /rerank`` takes ``{"query", "documents", "model"}`` and answers
``results[].relevance_score`` (the sigmoid of the logit, as the service's ``score``); ``loadgen``
speaks it as ``client="infinity"``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

from rerank_core.errors import BackendUnavailable
from rerank_tools.benchmark.local_server import HOST, LocalServer, free_port, offline_env

#: Where ``benchmarks/setup_infinity.sh`` installs Infinity.
DEFAULT_VENV = Path(".bench-venvs/infinity")
#: ``--dtype`` values of Infinity's torch engine that a CPU runs.
CPU_DTYPES = ("float32", "bfloat16")


class InfinityServer(LocalServer):
    """``infinity_emb v2`` on ``model_dir`` with ``dtype`` weights; ``model`` is the name requests
    give (``--served-model-name``)."""

    name = "infinity"

    def __init__(
        self,
        model_dir: str | Path,
        dtype: str = "bfloat16",
        *,
        venv: str | Path = DEFAULT_VENV,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
        startup_timeout_s: float = 300.0,
        log_path: str | Path | None = None,
    ) -> None:
        super().__init__(startup_timeout_s, log_path)
        self.model_dir = Path(model_dir).resolve()
        self.dtype = dtype
        self.venv = Path(venv).absolute()
        self.executable = self.venv / "bin" / "infinity_emb"
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self.model = self.model_dir.name

    def command(self, port: int) -> list[str]:
        """The command line it runs (recorded with the benchmark's results)."""
        return [
            str(self.executable), "v2",
            "--model-id", str(self.model_dir),
            "--served-model-name", self.model,
            "--engine", "torch",
            "--device", self.device,
            "--dtype", self.dtype,
            "--batch-size", str(self.batch_size),
            "--no-vector-disk-cache",
            "--host", HOST,
            "--port", str(port),
            "--log-level", "warning",
        ]  # fmt: skip

    def launch(self, stdout: int | IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
        if not self.executable.is_file():
            raise BackendUnavailable(
                f"{self.executable} not found: run benchmarks/setup_infinity.sh first",
                backend=self.name,
            )
        # Infinity binds the port itself: a port free now is the best that can be done.
        port = free_port()
        # Telemetry off; its cache folder in its venv, not in the working directory; thread count as
        # the other servers' where given.
        extra = {
            "INFINITY_ANONYMOUS_USAGE_STATS": "0",
            "DO_NOT_TRACK": "1",
            "INFINITY_HOME": str(self.venv),
        }
        if self.threads:
            extra["OMP_NUM_THREADS"] = str(self.threads)
        proc = subprocess.Popen(
            self.command(port), env=offline_env(**extra), stdout=stdout, stderr=subprocess.STDOUT
        )
        return proc, port
