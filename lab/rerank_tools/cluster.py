"""A real multi-node Ray cluster on 127.0.0.1, started with ``ray start`` and stopped by pid.

Every node is one ``ray start`` process in a process group of its own, so the cluster is stopped by
signalling exactly the process groups it started (never ``ray stop``, which would stop every Ray on
the machine). Every port is chosen free and the temp dir is private, so the cluster does not collide
with another Ray on the same host.

Ray's failure detection is set explicitly (``FAILURE_DETECTION``), so a lost node is declared dead,
and its replicas with it, within seconds. With a ``RedisServer`` the GCS is fault tolerant: it keeps
its tables in Redis, and a GCS killed on the head is brought back (``restart_gcs``) with what it knew.
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
from ray.util.state.exception import RayStateApiException

from deployments.ingress import HIGH_THROUGHPUT_ENV
from rerank_tools.ingress_env import isolated_haproxy_env, short_haproxy_dir

#: Environment variable naming the cluster's temp dir in every process of the cluster.
CLUSTER_MARKER = "RERANK_LOCAL_CLUSTER"
#: Object store of each node: small, the service moves little data through it.
OBJECT_STORE_BYTES = 150 * 1024 * 1024
#: Ray's node failure detection, in the environment of every process of the cluster (the GCS reads
#: it). The GCS checks each node's raylet every period and declares it dead after ``threshold``
#: checks in a row failed or went unanswered for the timeout; only then do callers of its actors
#: (the Router calling model replicas) learn that they are gone. Ray's defaults (every 3 s, 10 s
#: to answer, 5 misses) take 15 s or more. A lost node refuses the checks at once, so these take
#: about 5 s; a node that is only busy must leave 5 checks in a row unanswered for 2 s each to be
#: declared dead, which an overloaded machine's pauses do not.
FAILURE_DETECTION = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "2000",
    "RAY_health_check_failure_threshold": "5",
}
#: Starts of a node before its failure to start is the caller's.
NODE_START_TRIES = 2


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


class NodeExited(RuntimeError):
    """A node's ``ray start`` exited while it was awaited."""


def _ray_cli() -> str:
    """The ``ray`` command of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def redis_server_cli() -> str:
    """The ``redis-server`` binary (Debian's package, which ``make test`` and ``make cluster-demo``
    install where apt-get can)."""
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed: on Debian, apt-get install redis-server")
    return found


@dataclass
class RedisServer:
    """A ``redis-server`` on 127.0.0.1 at a free port, without persistence (it lives as long as the
    test cluster), stopped by its pid; use as a context manager."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_path: Path) -> RedisServer:
        """Start it and return once it accepts connections."""
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [redis_server_cli(), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(log_path.parent)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return self
            time.sleep(0.2)
        raise TimeoutError(f"redis-server not up after 30 s (see {log_path})")

    def keys(self, containing: str) -> list[str]:
        """The keys whose name contains ``containing`` (``redis-cli --scan``, which Debian's
        redis-server package brings)."""
        cli = Path(redis_server_cli()).with_name("redis-cli")
        done = subprocess.run(
            [str(cli), "-h", "127.0.0.1", "-p", str(self.port), "--scan", "--pattern", f"*{containing}*"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout.split()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, by pid."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class KilledProcess:
    """How a killed Ray process was started, so that it can be started again as it was."""

    pid: int
    cmdline: list[str]
    environ: dict[str, str]
    cwd: str


@dataclass
class Node:
    """One ``ray start`` process (its own process group), its log, and any process started for it
    since (a restarted GCS)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    resources: dict[str, float]
    #: True: ``ray start --block``, which stays up with the node (and tears it down when one of its
    #: processes dies). False: ``ray start`` returns once the node is up, its processes stay.
    blocking: bool = True
    restarted: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def processes(self) -> list[psutil.Process]:
        """The node's processes alive now: ``ray start`` and every descendant, every process of
        its process group (``ray start`` may have exited) and the restarted ones."""
        found: dict[int, psutil.Process] = {}
        roots = [self.process.pid, *(p.pid for p in self.restarted)]
        for pid in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                for proc in (root, *root.children(recursive=True)):
                    found[proc.pid] = proc
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                if os.getpgid(proc.pid) in roots:
                    found[proc.pid] = proc
        return list(found.values())

    def raylet_pid(self) -> int:
        """The pid of this node's raylet."""
        return self.pid_of("raylet")

    def pid_of(self, name: str) -> int:
        """The pid of this node's process named ``name`` (``raylet``, ``gcs_server``)."""
        for proc in self.processes():
            try:
                if proc.name() == name:
                    return proc.pid
            except psutil.NoSuchProcess:
                continue
        raise RuntimeError(f"node {self.name} has no {name} (see {self.log_path})")


@dataclass
class LocalCluster:
    """A head node and worker nodes on 127.0.0.1; use as a context manager to stop it by pid.

    ``head_resources`` and each worker's resources are custom Ray resources (``ray start
    --resources``), which the service config's ``resources`` fields select.
    """

    head_cpus: float = 1
    head_resources: dict[str, float] = field(default_factory=lambda: {"head_node": 1})
    env: dict[str, str] = field(default_factory=dict)
    #: ``host:port`` of the Redis that backs the GCS (GCS fault tolerance); None: the GCS keeps
    #: its tables in memory and the head is a single point of failure.
    redis_address: str | None = None
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
            **FAILURE_DETECTION,
            **self.env,
        }

    def _gcs_env(self, start: int) -> dict[str, str]:
        """The head's environment for a GCS kept in Redis (what KubeRay sets from the RayService's
        ``gcsFaultToleranceOptions``): the address, and a namespace of its own in that Redis (one
        per start of the head, so a head started again never reads a failed start's tables)."""
        if self.redis_address is None:
            return {}
        return {
            "RAY_REDIS_ADDRESS": self.redis_address,
            "RAY_external_storage_namespace": f"{self.temp_dir.name}-{start}",
        }

    def _start(
        self,
        name: str,
        args: list[str],
        resources: dict[str, float],
        cpus: float,
        *,
        blocking: bool = True,
        env: dict[str, str] | None = None,
    ) -> Node:
        worker_base = free_port_block(100, taken=frozenset(self.worker_blocks))
        self.worker_blocks.append(worker_base)
        log_path = self.temp_dir / f"{name}.log"
        command = [
            _ray_cli(), "start", *(["--block"] if blocking else []), "--disable-usage-stats",
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
                env={**self.process_env(), **(env or {})},
                start_new_session=True,
            )
        node = Node(name, process, log_path, resources, blocking)
        self.nodes.append(node)
        return node

    def start_head(self) -> Node:
        """The head: GCS, dashboard (the REST address of ``serve deploy``), metrics export port.

        With ``redis_address`` the head is started without ``--block``, whose watch would tear the
        whole head down (proxy and Router included) when the GCS dies: a lost GCS is then one
        process to bring back, as a supervisor (Kubernetes, systemd) would."""

        def start(attempt: int) -> Node:
            return self._start(
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
                blocking=self.redis_address is None,
                env=self._gcs_env(attempt),
            )

        return self._start_node(start, self._dashboard_up, "the head's dashboard")

    def add_worker(self, name: str, cpus: float, resources: dict[str, float]) -> Node:
        """A worker node joining the head; returns once the cluster counts it alive."""
        return self._start_node(
            lambda _: self._start(name, [f"--address={self.address}"], resources, cpus),
            lambda: self.alive_nodes_with(resources),
            f"worker {name}",
        )

    def _start_node(self, start: Callable[[int], Node], ready: Callable[[], object], what: str) -> Node:
        """``start(attempt)`` until ``ready()``; a node whose ``ray start`` gave up is stopped and
        started once more: Ray allows a raylet a fixed 30 s to register, which a loaded machine
        can miss."""
        for attempt in range(NODE_START_TRIES):
            node = start(attempt)
            try:
                self._wait(ready, 120, what, node)
                return node
            except NodeExited:
                self.stop_node(node)
                self.nodes.remove(node)
                if attempt + 1 == NODE_START_TRIES:
                    raise
        raise AssertionError("unreachable")

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

    def kill_gcs(self, head: Node) -> KilledProcess:
        """SIGKILL the head's ``gcs_server`` by pid, as a crash; returns how it was started."""
        proc = psutil.Process(head.pid_of("gcs_server"))
        killed = KilledProcess(proc.pid, proc.cmdline(), proc.environ(), proc.cwd())
        proc.kill()
        proc.wait(timeout=10)
        return killed

    def restart_gcs(self, head: Node, killed: KilledProcess) -> None:
        """Start the GCS again as it was started (same port, same Redis); returns once the
        cluster's state API answers through it. It reloads its tables from Redis."""
        if self.redis_address is None:
            raise RuntimeError("without Redis a restarted GCS would know nothing of the cluster")
        with (self.temp_dir / "gcs-restarted.log").open("ab") as log:
            gcs = subprocess.Popen(
                killed.cmdline, env=killed.environ, cwd=killed.cwd,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        head.restarted.append(gcs)
        self._wait(lambda: self.alive_nodes_with(self.head_resources), 120, "the restarted GCS", head)

    def stop_node(self, node: Node, grace_s: float = 10) -> None:
        """Stop the node's process groups (SIGTERM, then SIGKILL) and any descendant outside them."""
        stragglers = node.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for group in (node.process.pid, *(p.pid for p in node.restarted)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
            for proc in stragglers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(sig)
            _, alive = psutil.wait_procs(stragglers, timeout=grace_s)
            if not alive and node.process.poll() is not None:
                break
        for process in (node.process, *node.restarted):
            process.wait(timeout=grace_s)

    def stop(self) -> None:
        """Stop every node this cluster started (workers first), then any process that still
        carries this cluster's marker (a worker process that left its node's process group), and
        remove its temp dir."""
        for node in reversed(self.nodes):
            self.stop_node(node)
        self.nodes.clear()
        self.stop_marked()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)

    def marked_processes(self) -> list[psutil.Process]:
        """Processes alive now that run with this cluster's ``CLUSTER_MARKER`` or name its temp dir
        on their command line (all of its own)."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                marked = proc.environ().get(CLUSTER_MARKER) == str(self.temp_dir)
                if marked or str(self.temp_dir) in " ".join(proc.cmdline()):
                    found.append(proc)
        return found

    def stop_marked(self, grace_s: float = 10) -> None:
        """SIGTERM, then SIGKILL, by pid, every process still marked as this cluster's."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            marked = self.marked_processes()
            if not marked:
                return
            for proc in marked:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(sig)
            psutil.wait_procs(marked, timeout=grace_s)

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
            # A non-blocking ``ray start`` exits 0 once its node is up.
            code = node.process.poll()
            if code is not None and (node.blocking or code != 0):
                raise NodeExited(f"{what} exited: {node.log_path.read_text()[-3000:]}")
            # The state API answers errors of its own while the GCS it asks is not up yet.
            with contextlib.suppress(requests.RequestException, RayStateApiException):
                if ready():
                    return
            time.sleep(1)
        raise TimeoutError(f"{what} not up after {timeout_s:g} s (see {node.log_path})")
