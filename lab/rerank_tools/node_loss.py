"""What a lost node or model replica costs the requests in flight, measured as the world loads the
service: ``serve_config.yaml`` as shipped, deployed with ``serve deploy`` on a local cluster
(``ray start`` on 127.0.0.1: a head with the Router and the proxy, a worker with the model), a
quiet start, then independent requests at a fixed rate on connections of their own (open loop),
and the worker's raylet SIGKILLed under them (``--one-node``: a head alone, and the model
replica's process SIGKILLed instead). Prints every request (when it was sent, how long it took,
what it got) and a summary; exits 1 when a request had no answer within ``--bound`` seconds.

    python -m rerank_tools.node_loss                      # a worker lost, 40 requests at 4/s
    python -m rerank_tools.node_loss --rate 0.67          # one every 1.5 s: a minute of traffic
    python -m rerank_tools.node_loss --one-node           # the model replica's process killed
    python -m rerank_tools.node_loss --ingress proxy      # through Ray's Python proxy
    python -m rerank_tools.node_loss --ray-health-defaults  # Ray's own failure detection

Every process it starts is stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from rerank_tools.benchmark.loadgen import OpenLoad, Outcome
from rerank_tools.cluster import LocalCluster
from rerank_tools.cluster_demo import (
    SERVE_CONFIG,
    ServiceOnCluster,
    default_model,
    only_app,
    shipped_config,
    wait_for,
)

#: Ray's own failure detection (``--ray-health-defaults``), in place of the cluster's.
RAY_HEALTH_DEFAULTS = {
    "RAY_health_check_period_ms": "3000",
    "RAY_health_check_timeout_ms": "10000",
    "RAY_health_check_failure_threshold": "5",
}
#: Serve's ingress switches of each ``--ingress``.
INGRESS = {
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rerank_tools.node_loss", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rate", type=float, default=4.0, help="requests a second (default 4)")
    parser.add_argument("--count", type=int, default=40, help="requests in all (default 40)")
    parser.add_argument("--kill-at", type=float, default=2.0, help="seconds into the load (default 2)")
    parser.add_argument("--bound", type=float, default=15.0,
                        help="seconds each request must be answered within (default 15)")
    parser.add_argument("--one-node", action="store_true",
                        help="a head alone; the model replica's process is killed instead of a node")
    parser.add_argument("--ingress", choices=sorted(INGRESS), default="haproxy")
    parser.add_argument("--ray-health-defaults", action="store_true",
                        help="Ray's own node failure detection instead of the 1 s / 2 s / 5 the docs ask")
    parser.add_argument("--json", type=Path, help="also write the outcomes and summary here")
    return parser.parse_args(argv)


def summary(outcomes: list[Outcome], started: float, bound_s: float) -> dict[str, object]:
    """Counts of what the requests got, and the slowest answer."""
    statuses = Counter(
        "no answer" if o.status is None else f"{o.status} degraded" if o.degraded else str(o.status)
        for o in outcomes
    )
    late = [o for o in outcomes if o.status is None or o.elapsed_s > bound_s]
    return {
        "requests": len(outcomes),
        "outcomes": dict(sorted(statuses.items())),
        "bound_s": bound_s,
        "unanswered": len(late),
        "slowest_answer_s": round(
            max((o.elapsed_s for o in outcomes if o.status is not None), default=0.0), 2
        ),
        "first_unanswered_sent_at_s": round(min((o.started - started for o in late), default=-1.0), 2),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    env = {**INGRESS[args.ingress], **(RAY_HEALTH_DEFAULTS if args.ray_health_defaults else {})}
    repo = str(SERVE_CONFIG.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    temp_dir = Path(tempfile.mkdtemp(prefix="rrn-"))
    # One node: the head carries the model too (and CPUs for it); else a worker carries it.
    head_resources = {"head_node": 1, **({"model_node": 2} if args.one_node else {})}
    with LocalCluster(env=env, temp_dir=temp_dir, head_cpus=3 if args.one_node else 1,
                      head_resources=head_resources) as cluster:  # fmt: skip
        cluster.start_head()
        worker = None if args.one_node else cluster.add_worker("worker", 2, {"model_node": 2})
        service = ServiceOnCluster(cluster, only_app(yaml.safe_load(SERVE_CONFIG.read_text()))["name"])
        config = shipped_config(service.http_port)
        deployment = f"model-{default_model(config)}"
        service.deploy(config)
        wait_for("the application RUNNING", service.running, 300)
        # A quiet start: small requests one at a time, as before any burst.
        for _ in range(12):
            service.order()
            time.sleep(0.25)
        (replica,) = service.details()["deployments"][deployment]["replicas"]
        with OpenLoad(service.url + "/rerank", service.body, args.rate, args.count,
                      args.bound + 15) as load:  # fmt: skip
            time.sleep(args.kill_at)
            if worker is None:
                os.kill(replica["pid"], signal.SIGKILL)
                print(f"killed the model replica's process (pid {replica['pid']})", flush=True)
            else:
                print(f"killed the worker's raylet (pid {cluster.kill_raylet(worker)})", flush=True)
        outcomes = sorted(load.outcomes, key=lambda o: o.started)
        for o in outcomes:
            got = "no answer" if o.status is None else f"{o.status}{' degraded' if o.degraded else ''}"
            print(f"sent {o.started - load.started:6.2f} s  took {o.elapsed_s:6.2f} s  {got}")
        result = summary(outcomes, load.started, args.bound)
        result["run"] = {k: v for k, v in vars(args).items() if k != "json"}
        print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    return 0 if result["unanswered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
