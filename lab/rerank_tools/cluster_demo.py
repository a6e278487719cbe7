"""Run the service as production runs it: the repository's own serve_config.yaml (its defaults) on a
multi-node Ray cluster on 127.0.0.1 whose GCS is kept in Redis, deployed with ``serve deploy
--address <dashboard>``; then a worker node lost (its raylet SIGKILLed) under open-loop load, a node
rejoining, the head's GCS killed under load and brought back from Redis, a worker lost again after
that restart, a batch-settings change and a rolling model update. Prints what each step proved;
exits 1 on the first thing that does not hold. ``make cluster-demo`` runs it.

A node is lost under the load the world sends: independent requests at a fixed rate, each on a
connection of its own (``OpenLoad``), so dozens are waiting on the node when it dies.

The layout: a head node with 1 CPU and the custom resource ``head_node``, where the GCS, the Serve
controller, the only proxy (``proxy_location: HeadOnly``) and the Router live, so losing a worker
never loses the way in; and a worker with 2 CPUs and ``model_node: 2``, where the model's replicas
live. The settings added to serve_config.yaml are the placement a multi-node deployment needs
(``router.resources`` and the model's ``serving.resources``, docs/operations-faults.md) and a free
HTTP port; every other value is the shipped default. A request that finds no model replica is
answered once its attempts end, each bounded by the work it carries (``rerank_core.attempts``), by
the route's last resort (the original order, marked ``degraded``) or a 503, never by waiting for
the lost node.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from rerank_tools.benchmark.loadgen import Load, OpenLoad, Outcome
from rerank_tools.cluster import LocalCluster, Node, RedisServer, free_port

#: The repository root (the lab is installed from a clone: lab/rerank_tools/cluster_demo.py).
REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "serve_config.yaml"
#: The Router on the head and the models on workers, as docs/operations-faults.md asks of a
#: multi-node deployment (serve_config.yaml, written for one node, cannot name its nodes).
ROUTER_RESOURCES = {"head_node": 0.1}
MODEL_RESOURCES = {"model_node": 1}
#: The longest any request may take during a fault: two attempts at the route's floor (a few
#: seconds more where the measured rate of a busy machine stretches them) and the way in and out
#: through the proxy; far below the route's request deadline, which a lost node must never cost.
FAULT_BOUND_S = 15.0
#: Seconds the GCS stays down under load before it is started again.
GCS_DOWN_S = 5.0
#: The open-loop load a node is lost under: requests a second, and how many (12 s of them, the
#: node lost 2 s in).
NODE_LOSS_RATE = 8.0
NODE_LOSS_REQUESTS = 96
QUERY = "how do plants make food"
DOCUMENTS = [
    "The stock market fell on Monday.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "Bake the bread for forty minutes.",
    "Leaves hold chlorophyll, which captures light for the plant.",
]


class DemoFailure(AssertionError):
    """A promise of the service did not hold on the cluster."""


def shipped_config(http_port: int, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """serve_config.yaml as shipped, on ``http_port``, with the Router on the head and the default
    route's model on workers; ``model`` (type, model, ...) replaces that model where its weights
    are not at hand, keeping its ``serving`` settings."""
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    config["http_options"]["port"] = http_port
    service = only_app(config)["args"]["service"]
    service["router"] = {**service.get("router", {}), "resources": ROUTER_RESOURCES}
    name = default_model(config)
    serving = {**service["backends"][name]["serving"], "resources": MODEL_RESOURCES}
    service["backends"][name] = {**(model or service["backends"][name]), "serving": serving}
    return config


def only_app(config: dict[str, Any]) -> dict[str, Any]:
    (app,) = config["applications"]
    return app


def default_model(config: dict[str, Any]) -> str:
    """The backend name of the default route's first model."""
    service = only_app(config)["args"]["service"]
    return service["routes"][service["default_route"]]["backends"][0]


def with_overrides(config: dict[str, Any], deployment: str, **options: Any) -> dict[str, Any]:
    """``config`` with ``options`` added to its ``deployments:`` entry for ``deployment``."""
    updated = copy.deepcopy(config)
    app = only_app(updated)
    entries = app.setdefault("deployments", [])
    entry = next((e for e in entries if e["name"] == deployment), None)
    if entry is None:
        entry = {"name": deployment}
        entries.append(entry)
    entry.update(options)
    return updated


class ServiceOnCluster:
    """The deployed service: ``serve deploy`` over REST, status from Serve's REST API, HTTP calls."""

    def __init__(self, cluster: LocalCluster, app: str) -> None:
        self.cluster = cluster
        self.app = app
        #: Serve's HTTP port (``http_options.port`` of the deployed config).
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.body = {"query": QUERY, "documents": DOCUMENTS}

    def deploy(self, config: dict[str, Any]) -> None:
        """``serve deploy <config> --address <dashboard>``; returns once the config is accepted."""
        path = self.cluster.temp_dir / "serve_config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        serve_cli = str(Path(sys.executable).with_name("serve"))
        done = subprocess.run(
            [serve_cli, "deploy", str(path), "--address", self.cluster.dashboard_url],
            env=self.cluster.process_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise DemoFailure(f"serve deploy failed: {done.stderr[-2000:]}")

    def details(self) -> dict[str, Any]:
        """Serve's public REST status (``GET /api/serve/applications/``) of the application."""
        resp = requests.get(self.cluster.dashboard_url + "/api/serve/applications/", timeout=10)
        resp.raise_for_status()
        return resp.json()["applications"].get(self.app, {})

    def replicas(self, deployment: str) -> dict[str, str]:
        """Running replica id -> node id, from Serve's REST status."""
        dep = self.details().get("deployments", {}).get(deployment, {})
        return {r["replica_id"]: r["node_id"] for r in dep.get("replicas", []) if r["state"] == "RUNNING"}

    def running(self) -> bool:
        """The application is RUNNING (every deployment healthy at its target)."""
        return self.details().get("status") == "RUNNING"

    def order(self) -> list[int]:
        """The order /rerank answers for the demo's query; DemoFailure unless 200."""
        resp = requests.post(self.url + "/rerank", json=self.body, timeout=30)
        if resp.status_code != 200:
            raise DemoFailure(f"/rerank answered {resp.status_code}: {resp.text[:300]}")
        return [r["index"] for r in resp.json()["results"]]

    def load(self, clients: int = 6) -> Load:
        """Closed-loop load on /rerank; a context manager."""
        return Load(self.url + "/rerank", self.body, clients=clients)

    def lose_worker(self, worker: Node, say: Callable[[str], None]) -> str:
        """The worker's raylet SIGKILLed 2 s into an open-loop load on /rerank; what its requests
        got (``check_outcomes``: each answered within ``FAULT_BOUND_S``) and how many were
        waiting 1.5 s after the kill."""
        order = self.order()
        with OpenLoad(
            self.url + "/rerank", self.body, NODE_LOSS_RATE, NODE_LOSS_REQUESTS, FAULT_BOUND_S + 5
        ) as load:
            time.sleep(2)
            pid = self.cluster.kill_raylet(worker)
            say(f"killed the worker's raylet (pid {pid}) under open-loop load")
            time.sleep(1.5)
            waiting = load.in_flight()
        outcomes = check_outcomes(
            "worker lost", load.outcomes, order, {429, 503}, FAULT_BOUND_S, degraded_ok=True
        )
        return f"{waiting} requests waiting 1.5 s after the kill; {outcomes}"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``check()`` holds; DemoFailure naming ``what`` past ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if check():
                return time.monotonic() - start
        except (requests.RequestException, DemoFailure):
            pass
        time.sleep(1)
    raise DemoFailure(f"{what}: not within {timeout_s:g} s")


def check_outcomes(
    what: str,
    outcomes: list[Outcome],
    order: list[int],
    allowed: set[int],
    bound_s: float,
    *,
    degraded_ok: bool = False,
) -> str:
    """Every request answered within ``bound_s``: 200 in ``order``, or a status in ``allowed``;
    with ``degraded_ok`` also a 200 that is the route's declared last resort: marked degraded,
    in the original order."""
    if not outcomes:
        raise DemoFailure(f"{what}: no request was sent")
    original = sorted(order)
    hung = [o for o in outcomes if o.status is None or o.elapsed_s > bound_s]
    degraded = [o for o in outcomes if o.status == 200 and o.degraded]

    def right(o: Outcome) -> bool:
        return (degraded_ok and o.order == original) if o.degraded else o.order == order

    wrong = [o for o in outcomes if o.status == 200 and not right(o)]
    refused = [o for o in outcomes if o.status not in (200, None)]
    bad = [o for o in refused if o.status not in allowed]
    if hung or wrong or bad:
        first = min(o.started for o in outcomes)
        failed = sorted(o.started - first for o in hung + wrong + bad)
        raise DemoFailure(
            f"{what}: {len(hung)} hung past {bound_s:g} s or failed to connect, {len(wrong)} in a "
            f"wrong order or degraded, statuses outside {sorted(allowed) or '[200]'}: "
            f"{sorted({o.status for o in bad})}, sent {failed[0]:.1f} to {failed[-1]:.1f} s into the "
            f"load ({len(outcomes)} requests in all); e.g. {sorted({str(o.detail) for o in hung + bad})[:2]}"
        )
    slowest = max(o.elapsed_s for o in outcomes)
    ranked = len(outcomes) - len(refused) - len(degraded)
    summary = f"{len(outcomes)} requests: {ranked} x 200 in the right order, "
    if degraded:
        summary += (
            f"{len(degraded)} x 200 degraded (original order; slowest "
            f"{max(o.elapsed_s for o in degraded):.1f} s), "
        )
    if refused:
        statuses = ", ".join(sorted({str(o.status) for o in refused}))
        slowest_refusal = max(o.elapsed_s for o in refused)
        summary += f"{len(refused)} refused ({statuses}; slowest {slowest_refusal:.1f} s), "
    elif not degraded:
        summary += "none refused, "
    return summary + f"slowest answer {slowest:.1f} s, none hung"


def run_demo(
    model: dict[str, Any] | None = None,
    say: Callable[[str], None] = print,
    temp_dir: Path | None = None,
) -> list[str]:
    """Every step on a fresh cluster and Redis, stopped by pid at the end; returns what was proved.

    ``model`` (a backend config: type, model, ...) replaces serve_config.yaml's default model where
    its weights are not at hand (None: as shipped). ``temp_dir`` is the cluster's Ray temp dir
    (default: a new one); keep its path short, Ray puts Unix sockets under it.
    """
    proved: list[str] = []

    def prove(line: str) -> None:
        proved.append(line)
        say(f"PROVED {line}")

    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="rrc-"))
    with RedisServer() as redis:
        redis.start(temp_dir / "redis.log")
        with LocalCluster(env=env, temp_dir=temp_dir, redis_address=redis.address) as cluster:
            _run_steps(cluster, redis, model, say, prove)
    say("cluster and Redis stopped by pid")
    return proved


def _run_steps(
    cluster: LocalCluster,
    redis: RedisServer,
    model: dict[str, Any] | None,
    say: Callable[[str], None],
    prove: Callable[[str], None],
) -> None:
    started = time.monotonic()
    head = cluster.start_head()
    worker = cluster.add_worker("worker-1", 2, {"model_node": 2})
    say(f"cluster up in {time.monotonic() - started:.0f} s: head {cluster.address} (GCS in Redis "
        f"{redis.address}), dashboard {cluster.dashboard_url}")  # fmt: skip
    service = ServiceOnCluster(cluster, only_app(yaml.safe_load(SERVE_CONFIG.read_text()))["name"])
    config = shipped_config(service.http_port, model)
    backend = default_model(config)
    deployment = f"model-{backend}"
    service.deploy(config)
    took = wait_for("the application RUNNING", service.running, 240)
    prove(f"serve_config.yaml deployed with serve deploy --address {cluster.dashboard_url}: "
          f"RUNNING in {took:.0f} s")  # fmt: skip

    head_nodes = set(cluster.alive_nodes_with({"head_node": 1}))
    model_at, router_at = service.replicas(deployment), service.replicas("Router")
    if not model_at or set(model_at.values()) & head_nodes:
        raise DemoFailure(f"model replicas {model_at} not all on workers (head {head_nodes})")
    if not router_at or not set(router_at.values()) <= head_nodes:
        raise DemoFailure(f"Router replicas {router_at} not all on the head {head_nodes}")
    prove(f"{len(model_at)} model replica(s) on the worker, {len(router_at)} Router replica(s) "
          "on the head")  # fmt: skip
    order = service.order()
    if requests.get(service.url + "/health", timeout=10).status_code != 200:
        raise DemoFailure("/health is not 200")
    prove(f"/health 200 and /rerank 200 over HTTP, order {order}")

    prove("worker lost (raylet SIGKILLed, no GCS restart before it): " + service.lose_worker(worker, say))

    def rejoin(name: str) -> Node:
        node = cluster.add_worker(name, 2, {"model_node": 2})
        took = wait_for("whole again after a worker joined", lambda: service.running()
                        and len(service.replicas(deployment)) == len(model_at)
                        and all(service.order() == order for _ in range(10)), 180)  # fmt: skip
        prove(f"a new worker ({name}) joined: whole again {took:.0f} s later, without a redeploy")
        return node

    worker = rejoin("worker-2")
    model_at = service.replicas(deployment)

    with service.load() as load:
        time.sleep(2)
        killed = cluster.kill_gcs(head)
        say(f"killed the head's gcs_server (pid {killed.pid}) under load")
        time.sleep(GCS_DOWN_S)
        cluster.restart_gcs(head, killed)
        back = time.monotonic()
        time.sleep(2)
    prove(f"GCS down {GCS_DOWN_S:g} s under load, answers went on: " + check_outcomes(
        "GCS lost", load.outcomes, order, set(), FAULT_BOUND_S))  # fmt: skip
    if not redis.keys(cluster.temp_dir.name):
        raise DemoFailure("Redis holds nothing of the cluster: the GCS did not keep its tables there")
    took = wait_for("whole again after the GCS came back", lambda: service.running()
                    and service.replicas(deployment) == model_at
                    and len(cluster.alive_nodes_with({})) == 2, 60)  # fmt: skip
    prove(f"GCS back from Redis: both nodes alive, the same replicas, application RUNNING "
          f"{time.monotonic() - back:.0f} s after its restart")  # fmt: skip

    prove("worker lost after the GCS restart: " + service.lose_worker(worker, say))
    rejoin("worker-3")

    before = service.replicas(deployment)
    batch = {"max_batch_size": 7, "batch_wait_timeout_s": 0.02}
    service.deploy(with_overrides(config, deployment, user_config=batch))

    def batch_applied() -> bool:
        stats = requests.get(service.url + "/v1/stats", timeout=10).json()["models"][backend]
        # Each running replica's own figures (replicas that left the cluster age out).
        reported = [stats["replicas"][r] for r in service.replicas(deployment) if r in stats["replicas"]]
        return len(reported) == len(before) and all(r["max_batch_size"] == 7 for r in reported)

    took = wait_for("the batch settings reaching the replicas", batch_applied, 60)
    if service.replicas(deployment) != before:
        raise DemoFailure("changing user_config restarted the model replicas")
    prove(f"user_config (max_batch_size 7) reached the running replicas in {took:.0f} s, "
          "same replicas, no restart")  # fmt: skip

    # A new version of the model (its max_length): the deployment's code changes.
    updated = copy.deepcopy(config)
    models = only_app(updated)["args"]["service"]["backends"]
    models[backend] = {**models[backend], "max_length": 128}
    with service.load(clients=4) as load:
        time.sleep(1)
        service.deploy(updated)
        took = wait_for("the rolling update", lambda: service.running() and not (
            set(service.replicas(deployment)) & set(before)), 240)  # fmt: skip
        time.sleep(1)
    prove(f"model change rolled out in {took:.0f} s: " + check_outcomes(
        "rolling update", load.outcomes, order, set(), 30))  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help="a local cross-encoder directory to serve in place of serve_config.yaml's "
                        "default model (default: serve_config.yaml as shipped)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = None
    if args.model:
        model = {"type": "cross_encoder", "model": str(Path(args.model).resolve())}
    try:
        proved = run_demo(model)
    except DemoFailure as exc:
        print(f"FAILED {exc}")
        return 1
    print(f"all {len(proved)} checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
