"""A server the benchmark starts as a subprocess on a loopback port, waits for, and stops by pid.

``LocalServer`` holds what every such server shares (readiness by polling a health route, a log
file, terminate-then-kill by pid, a context manager); a subclass says only how to launch itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

from rerank_core.errors import BackendUnavailable

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port free at the time of asking (for servers that cannot take a socket)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """A subprocess serving HTTP on ``HOST``; ``url`` once started.

    ``start`` waits (at most ``startup_timeout_s``) until ``health_path`` answers 200; ``stop``
    terminates the process by its pid (then kills it if it lingers). A context manager does both.
    """

    #: The name in errors and in the benchmark's records.
    name = "server"
    health_path = "/health"

    def __init__(self, startup_timeout_s: float = 120.0, log_path: str | Path | None = None) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.url = ""
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def launch(self, stdout: int | IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
        """Start the process (its output to ``stdout``); return it and the port it will serve on."""
        raise NotImplementedError

    def start(self) -> str:
        """Start the server and return its base URL once it answers."""
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc, port = self.launch(log)
        finally:
            # The child holds its own copy of the log file.
            if log is not subprocess.DEVNULL:
                log.close()
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self._wait_ready()
        return self.url

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BackendUnavailable(
                    f"the {self.name} server exited with code {self._proc.returncode} while starting"
                    + (f" (log: {self.log_path})" if self.log_path else ""),
                    backend=self.name,
                )
            try:
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet: the model is still loading
            time.sleep(0.2)
        self.stop()
        raise BackendUnavailable(
            f"the {self.name} server did not answer within {self.startup_timeout_s:g}s"
            + (f" (log: {self.log_path})" if self.log_path else ""),
            backend=self.name,
        )

    def stop(self) -> None:
        """Terminate the subprocess (by pid) and wait for it; idempotent."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment with the Hugging Face hub off: a server loads local files only."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}
