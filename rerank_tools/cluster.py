"""A real multi-node Ray cluster on 127.0.0.1, started with ``ray start`` and stopped by pid.

Every node is one ``ray start --block`` process in a process group of its own, so the cluster is
stopped by signalling exactly the process groups it started (never ``ray stop``, which would stop
every Ray on the machine). Every port is chosen free and the temp dir is private, so the cluster
does not collide with another Ray on the same host.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from deployments.ingress import HIGH_THROUGHPUT_ENV
from rerank_tools.ingress_env import isolated_haproxy_env, short_haproxy_dir

#: Environment variable naming the cluster's temp dir in every process of the cluster.
CLUSTER_MARKER = "RERANK_LOCAL_CLUSTER"
#: Object store of each node: small, the service moves little data through it.
OBJECT_STORE_BYTES = 150 * 1024 * 1024


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range, where every ``free_port()`` answer lands."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_block(count: int = 100, tries: int = 50, taken: frozenset[int] = frozenset()) -> int:
    """The first port of ``count`` consecutive ports, all free now and all outside the ephemeral
    range, so no port another component gets from ``free_port()`` can fall inside the block (Ray
    refuses to start a node whose worker ports overlap another of its ports). ``taken``: block
    starts already given to other nodes, which bind their ports only later."""
    low, high = _ephemeral_range()
    candidates = [b for b in range(10_000, 65_500 - count, count) if b + count <= low or b > high]
    candidates = [b for b in candidates if b not in taken]
    for base in random.sample(candidates, min(tries, len(candidates))):
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no block of {count} free ports outside {low}-{high}")


def _ray_cli() -> str:
    """The ``ray`` command of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


@dataclass
class Node:
    """One ``ray start --block`` process (its own process group) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    resources: dict[str, float]

    def processes(self) -> list[psutil.Process]:
        """The node's processes alive now: ``ray start`` and every descendant."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def raylet_pid(self) -> int:
        """The pid of this node's raylet."""
        for proc in self.processes():
            try:
                if proc.name() == "raylet":
                    return proc.pid
            except psutil.NoSuchProcess:
                continue
        raise RuntimeError(f"node {self.name} has no raylet (see {self.log_path})")


@dataclass
class LocalCluster:
    """A head node and worker nodes on 127.0.0.1; use as a context manager to stop it by pid.

    ``head_resources`` and each worker's resources are custom Ray resources (``ray start
    --resources``), which the service config's ``resources`` fields select.
    """

    head_cpus: float = 1
    head_resources: dict[str, float] = field(default_factory=lambda: {"head_node": 1})
    env: dict[str, str] = field(default_factory=dict)
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rrc-")))
    #: HAProxy's files: a folder of its own, since its socket path must stay short.
    haproxy_dir: Path = field(default_factory=short_haproxy_dir)
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    worker_blocks: list[int] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The GCS address workers and drivers join."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """Where ``serve deploy --address`` and the state API reach the cluster."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def process_env(self) -> dict[str, str]:
        """The environment every process of the cluster runs with. ``CLUSTER_MARKER`` (the temp
        dir) is inherited by every process Ray starts, so a check can find any left behind.
        Serve's ingress is the shipped one (``HIGH_THROUGHPUT_ENV``) unless the caller's environment
        says otherwise; HAProxy's files and ports are always this cluster's own, so it never meets
        another Ray on the machine (a test session's, say)."""
        return {
            **HIGH_THROUGHPUT_ENV,
            **os.environ,
            **isolated_haproxy_env(self.haproxy_dir),
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
            CLUSTER_MARKER: str(self.temp_dir),
            **self.env,
        }

    def _start(self, name: str, args: list[str], resources: dict[str, float], cpus: float) -> Node:
        worker_base = free_port_block(100, taken=frozenset(self.worker_blocks))
        self.worker_blocks.append(worker_base)
        log_path = self.temp_dir / f"{name}.log"
        command = [
            _ray_cli(), "start", "--block", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1",
            f"--num-cpus={cpus:g}", "--num-gpus=0",
            "--resources", json.dumps(resources),
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--min-worker-port={worker_base}", f"--max-worker-port={worker_base + 99}",
            *args,
        ]  # fmt: skip
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.process_env(),
                start_new_session=True,
            )
        node = Node(name, process, log_path, resources)
        self.nodes.append(node)
        return node

    def start_head(self) -> Node:
        """The head: GCS, dashboard (the REST address of ``serve deploy``), metrics export port."""
        head = self._start(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                f"--temp-dir={self.temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
                f"--metrics-export-port={self.metrics_port}",
            ],
            self.head_resources,
            self.head_cpus,
        )
        self._wait(lambda: self._dashboard_up(), 120, "the head's dashboard", head)
        return head

    def add_worker(self, name: str, cpus: float, resources: dict[str, float]) -> Node:
        """A worker node joining the head; returns once the cluster counts it alive."""
        node = self._start(name, [f"--address={self.address}"], resources, cpus)
        self._wait(lambda: self.alive_nodes_with(resources), 120, f"worker {name}", node)
        return node

    def alive_nodes_with(self, resources: dict[str, float]) -> list[str]:
        """Ids of alive nodes that offer every resource in ``resources``."""
        from ray.util.state import list_nodes

        found = []
        for n in list_nodes(address=self.dashboard_url):
            if n.state == "ALIVE" and all(n.resources_total.get(k, 0) >= v for k, v in resources.items()):
                found.append(n.node_id)
        return found

    def kill_raylet(self, node: Node) -> int:
        """SIGKILL the node's raylet, as a lost machine; its ``ray start --block`` then tears the
        rest of the node down. Returns the raylet's pid."""
        pid = node.raylet_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop_node(self, node: Node, grace_s: float = 10) -> None:
        """Stop the node's process group (SIGTERM, then SIGKILL) and any descendant outside it."""
        stragglers = node.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, sig)
            for proc in stragglers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(sig)
            _, alive = psutil.wait_procs(stragglers, timeout=grace_s)
            if not alive and node.process.poll() is not None:
                break
        node.process.wait(timeout=grace_s)

    def stop(self) -> None:
        """Stop every node this cluster started (workers first) and remove its temp dir."""
        for node in reversed(self.nodes):
            self.stop_node(node)
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dashboard_up(self) -> bool:
        try:
            return requests.get(self.dashboard_url + "/api/version", timeout=5).ok
        except requests.RequestException:
            return False

    @staticmethod
    def _wait(ready: Callable[[], object], timeout_s: float, what: str, node: Node) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"{what} exited: {node.log_path.read_text()[-3000:]}")
            if ready():
                return
            time.sleep(1)
        raise TimeoutError(f"{what} not up after {timeout_s:g} s (see {node.log_path})")
