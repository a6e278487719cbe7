"""The environment of Ray Serve's ingress modes, for the benchmark and the local tools.

``haproxy`` is what the service ships (``deployments.ingress.HIGH_THROUGHPUT_ENV``); ``direct`` is
throughput-optimized mode without HAProxy (Serve then sends traffic straight to the Router's
replicas); ``proxy`` is Ray's classic Python proxy. HAProxy's files and its stats and metrics ports
are machine-wide by default (``/tmp/haproxy-serve``, 8404, 9101), so every Ray started by a tool or a
test gets its own (``isolated_haproxy_env``): several can then run on one machine.

``python -m rerank_tools.ingress_env MODE DIR`` prints the ``export`` lines for a shell.
"""

from __future__ import annotations

import argparse
import shlex
import socket
import tempfile
from pathlib import Path

from deployments.ingress import HIGH_THROUGHPUT_ENV

INGRESS_MODES: dict[str, dict[str, str]] = {
    "haproxy": dict(HIGH_THROUGHPUT_ENV),
    "direct": {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    },
    "proxy": {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: HAProxy refuses a longer admin socket path, and Serve puts the socket in a folder named after the
#: node (a 56-character id) under the configured one.
HAPROXY_SOCKET_PATH_MAX = 97
_NODE_FOLDER_AND_SOCKET = len("/") + 56 + len("/admin.sock")


def short_haproxy_dir() -> Path:
    """A new private folder short enough for HAProxy's socket (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix="rrhp-"))


def isolated_haproxy_env(directory: Path) -> dict[str, str]:
    """HAProxy's config, socket and state files under ``directory`` (created) and free ports for
    its stats page and metrics, instead of the machine-wide defaults. ``ValueError`` when the
    folder is too deep for HAProxy's socket path (``short_haproxy_dir`` gives one that fits)."""
    if len(str(directory)) + _NODE_FOLDER_AND_SOCKET > HAPROXY_SOCKET_PATH_MAX:
        raise ValueError(
            f"{directory}: too long for HAProxy's admin socket path (at most "
            f"{HAPROXY_SOCKET_PATH_MAX - _NODE_FOLDER_AND_SOCKET} characters); use a folder under /tmp"
        )
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(directory / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(directory / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(directory),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(directory / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
    }


def ingress_env(mode: str, directory: Path) -> dict[str, str]:
    """``mode``'s switches plus, where HAProxy runs, its isolated files and ports."""
    if mode not in INGRESS_MODES:
        raise ValueError(f"unknown ingress mode {mode!r}; known: {', '.join(INGRESS_MODES)}")
    env = dict(INGRESS_MODES[mode])
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        env.update(isolated_haproxy_env(directory))
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print export lines of a Ray Serve ingress mode.")
    parser.add_argument("mode", choices=list(INGRESS_MODES))
    parser.add_argument("directory", type=Path, help="where HAProxy's files go")
    args = parser.parse_args(argv)
    for key, value in ingress_env(args.mode, args.directory.absolute()).items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
