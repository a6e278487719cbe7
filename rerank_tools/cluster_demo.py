"""Run the service as production runs it: a multi-node Ray cluster on 127.0.0.1, deployed with
``serve deploy --address <dashboard>``, then a worker node lost under load, a node rejoining, a
batch-settings change and a rolling model update. Prints what each step proved; exits 1 on the
first thing that does not hold. ``make cluster-demo`` runs it.

The layout: a head node with 1 CPU and the custom resource ``head_node`` (the Router's two replicas,
the Serve controller and the only proxy live there, so losing a worker never loses the way in) and
a worker with 2 CPUs and ``model_node: 2`` (the model's replicas need ``model_node``, which the head
lacks). The route is strict (``last_resort: false``) with a short per-attempt deadline and the
request a longer overall one, so a request that finds no model replica gets a 503 once its
attempts end (``REFUSED_BY_S``) instead of waiting; the request's deadline (504) is only a backstop.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from rerank_core.config import PACKAGED_MINILM
from rerank_tools.cluster import LocalCluster, free_port
from rerank_tools.load import Load, Outcome

REPO = Path(__file__).resolve().parents[1]
APP = "rerank"
BACKEND = "model"
DEPLOYMENT = f"model-{BACKEND}"
#: Per-attempt deadline of the route: what bounds an attempt that finds no model replica.
ROUTE_TIMEOUT_S = 3.0
#: One retry (a replica that died mid-request is retried on another at once), then a 503.
ROUTE_RETRIES = 1
ROUTE_BACKOFF_S = 0.3
#: When a request that finds no model replica is refused (503, every backend failed): all its
#: attempts and backoffs, well inside the request's deadline.
REFUSED_BY_S = ROUTE_TIMEOUT_S * (ROUTE_RETRIES + 1) + ROUTE_BACKOFF_S
#: The whole request's deadline in the Router (then 504), fallbacks and retries included: the
#: backstop, never reached when the route's attempts fit inside it.
REQUEST_TIMEOUT_S = 8.0
#: Seconds an open circuit breaker refuses before it lets a probe through.
BREAKER_RESET_S = 2.0
#: The longest any request may take during a fault: its refusal plus the way in and out through
#: the proxy (seconds on a busy machine).
FAULT_BOUND_S = REFUSED_BY_S + 4
QUERY = "how do plants make food"
DOCUMENTS = [
    "The stock market fell on Monday.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "Bake the bread for forty minutes.",
    "Leaves hold chlorophyll, which captures light for the plant.",
]


class DemoFailure(AssertionError):
    """A promise of the service did not hold on the cluster."""


def service_config(backend: dict[str, Any]) -> dict[str, Any]:
    """The service: one local model on worker nodes, a strict route, the Router on the head."""
    return {
        "backends": {
            BACKEND: {
                **backend,
                "serving": {
                    "num_cpus": 0.5,
                    "torch_threads": 1,
                    "resources": {"model_node": 1},
                    "min_replicas": 2,
                    "max_replicas": 2,
                    "max_batch_size": 32,
                    "batch_wait_timeout_s": 0.01,
                },
            }
        },
        "routes": {
            "default": {"backends": [BACKEND], "timeout_s": ROUTE_TIMEOUT_S,
                        "retries": ROUTE_RETRIES, "backoff_s": ROUTE_BACKOFF_S, "last_resort": False},
        },
        "default_route": "default",
        "limits": {"request_timeout_s": REQUEST_TIMEOUT_S},
        # A lost worker opens each Router replica's breaker; it lets a probe in after 2 s, so the
        # service is whole again within seconds of the worker's return.
        "breaker": {"failures": 5, "reset_s": BREAKER_RESET_S},
        "router": {"num_cpus": 0.1, "num_replicas": 2, "resources": {"head_node": 0.1}},
    }  # fmt: skip


def serve_config(http_port: int, service: dict[str, Any], **app_extra: Any) -> dict[str, Any]:
    """A ``serve deploy`` config: the only proxy on the head, a bounded proxy deadline."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": http_port, "request_timeout_s": 15},
        "applications": [
            {
                "name": APP,
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": {"service": service},
                **app_extra,
            }
        ],
    }


class ServiceOnCluster:
    """The deployed service: ``serve deploy`` over REST, status from Serve's REST API, HTTP calls."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
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
        return resp.json()["applications"].get(APP, {})

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
    what: str, outcomes: list[Outcome], order: list[int], allowed: set[int], bound_s: float
) -> str:
    """Every request answered within ``bound_s``: 200 in ``order``, or a status in ``allowed``."""
    if not outcomes:
        raise DemoFailure(f"{what}: no request was sent")
    hung = [o for o in outcomes if o.status is None or o.elapsed_s > bound_s]
    wrong = [o for o in outcomes if o.status == 200 and o.order != order]
    refused = [o for o in outcomes if o.status not in (200, None)]
    bad = [o for o in refused if o.status not in allowed]
    if hung or wrong or bad:
        first = min(o.started for o in outcomes)
        failed = sorted(o.started - first for o in hung + wrong + bad)
        raise DemoFailure(
            f"{what}: {len(hung)} hung past {bound_s:g} s or failed to connect, {len(wrong)} in a "
            f"wrong order, statuses outside {sorted(allowed) or '[200]'}: "
            f"{sorted({o.status for o in bad})}, sent {failed[0]:.1f} to {failed[-1]:.1f} s into the "
            f"load ({len(outcomes)} requests in all); e.g. {sorted({str(o.detail) for o in hung + bad})[:2]}"
        )
    slowest = max(o.elapsed_s for o in outcomes)
    summary = f"{len(outcomes)} requests: {len(outcomes) - len(refused)} x 200 in the right order, "
    if refused:
        statuses = ", ".join(sorted({str(o.status) for o in refused}))
        slowest_refusal = max(o.elapsed_s for o in refused)
        summary += f"{len(refused)} refused ({statuses}; slowest {slowest_refusal:.1f} s), "
    else:
        summary += "none refused, "
    return summary + f"slowest answer {slowest:.1f} s, none hung"


def run_demo(
    model: dict[str, Any],
    next_model: dict[str, Any],
    say: Callable[[str], None] = print,
    temp_dir: Path | None = None,
) -> list[str]:
    """Every step on a fresh cluster, stopped by pid at the end; returns what was proved.

    ``model`` and ``next_model`` are backend configs (type, model, ...) before and after the
    rolling update; they must rank ``DOCUMENTS`` the same way. ``temp_dir`` is the cluster's Ray
    temp dir (default: a new one); keep its path short, Ray puts Unix sockets under it.
    """
    proved: list[str] = []

    def prove(line: str) -> None:
        proved.append(line)
        say(f"PROVED {line}")

    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cluster = LocalCluster(env=env) if temp_dir is None else LocalCluster(env=env, temp_dir=temp_dir)
    with cluster:
        started = time.monotonic()
        cluster.start_head()
        worker = cluster.add_worker("worker-1", 2, {"model_node": 2})
        say(f"cluster up in {time.monotonic() - started:.0f} s: head {cluster.address}, "
            f"dashboard {cluster.dashboard_url}, metrics :{cluster.metrics_port}")  # fmt: skip
        service = ServiceOnCluster(cluster)
        config = serve_config(service.http_port, service_config(model))
        service.deploy(config)
        took = wait_for("the application RUNNING", service.running, 240)
        prove(f"serve deploy --address {cluster.dashboard_url}: application RUNNING in {took:.0f} s")

        model_nodes = set(cluster.alive_nodes_with({"model_node": 1}))
        head_nodes = set(cluster.alive_nodes_with({"head_node": 1}))
        model_at, router_at = service.replicas(DEPLOYMENT), service.replicas("Router")
        if len(model_at) != 2 or not set(model_at.values()) <= model_nodes:
            raise DemoFailure(f"model replicas {model_at} not all on model nodes {model_nodes}")
        if len(router_at) != 2 or not set(router_at.values()) <= head_nodes:
            raise DemoFailure(f"Router replicas {router_at} not all on the head {head_nodes}")
        prove("2 model replicas on the worker (model_node), 2 Router replicas on the head (head_node)")
        order = service.order()
        if requests.get(service.url + "/health", timeout=10).status_code != 200:
            raise DemoFailure("/health is not 200")
        prove(f"/health 200 and /rerank 200 over HTTP, order {order}")

        with service.load() as load:
            time.sleep(2)
            pid = cluster.kill_raylet(worker)
            say(f"killed the worker's raylet (pid {pid}) under load")
            time.sleep(8)
        prove("worker lost under load: " + check_outcomes(
            "worker lost", load.outcomes, order, {429, 503}, FAULT_BOUND_S))  # fmt: skip

        cluster.add_worker("worker-2", 2, {"model_node": 2})
        took = wait_for("whole again after a worker joined", lambda: service.running()
                        and len(service.replicas(DEPLOYMENT)) == 2
                        and all(service.order() == order for _ in range(10)), 180)
        prove(f"a new worker joined: whole again {took:.0f} s later, without a redeploy")  # fmt: skip

        before = service.replicas(DEPLOYMENT)
        batch = {"max_batch_size": 7, "batch_wait_timeout_s": 0.02}
        service.deploy({**config, "applications": [
            {**config["applications"][0], "deployments": [{"name": DEPLOYMENT, "user_config": batch}]}
        ]})  # fmt: skip

        def batch_applied() -> bool:
            stats = requests.get(service.url + "/v1/stats", timeout=10).json()["models"][BACKEND]
            # Each running replica's own figures (replicas that left the cluster age out).
            reported = [stats["replicas"][r] for r in service.replicas(DEPLOYMENT) if r in stats["replicas"]]
            return len(reported) == 2 and all(r["max_batch_size"] == 7 for r in reported)

        took = wait_for("the batch settings reaching the replicas", batch_applied, 60)
        if service.replicas(DEPLOYMENT) != before:
            raise DemoFailure("changing user_config restarted the model replicas")
        prove(f"user_config (max_batch_size 7) reached the running replicas in {took:.0f} s, "
              "same replicas, no restart")  # fmt: skip

        updated = copy.deepcopy(config)
        updated["applications"][0]["args"]["service"] = service_config(next_model)
        with service.load(clients=4) as load:
            time.sleep(1)
            service.deploy(updated)
            took = wait_for("the rolling update", lambda: service.running() and not (
                set(service.replicas(DEPLOYMENT)) & set(before)), 240)  # fmt: skip
            time.sleep(1)
        prove(f"model change rolled out in {took:.0f} s: " + check_outcomes(
            "rolling update", load.outcomes, order, set(), 30))  # fmt: skip
    say("cluster stopped by pid")
    return proved


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=PACKAGED_MINILM,
                        help="a local cross-encoder directory, or the packaged bi-encoder (default)")
    parser.add_argument("--next-model", default=None,
                        help="the model rolled out by the update (default: the same model "
                        "with max_length 128, a new version of its deployment)")  # fmt: skip
    return parser.parse_args(argv)


def backend_for(model: str) -> dict[str, Any]:
    """The backend config of ``model``: the packaged bi-encoder, or a cross-encoder directory."""
    if model == PACKAGED_MINILM:
        return {"type": "bi_encoder", "model": model}
    return {"type": "cross_encoder", "model": str(Path(model).resolve())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = backend_for(args.model)
    next_model = backend_for(args.next_model) if args.next_model else {**model, "max_length": 128}
    try:
        proved = run_demo(model, next_model)
    except DemoFailure as exc:
        print(f"FAILED {exc}")
        return 1
    print(f"all {len(proved)} checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
