"""Autoscaling under rising and falling load: replicas, throughput and p99 over time.

Deploys the service on a local Ray with one autoscaled model deployment (fractional CPUs), drives
closed-loop HTTP load in phases (``--phases clients:seconds,...``), and every ``--interval-s``
writes one JSON line: seconds since start, load clients, RUNNING and STARTING replicas (from
``serve.status()``), requests/s, p50/p99 latency and errors of the requests that finished in that
interval. Then it plots replicas, throughput and latency into a PNG.

    python -m rerank_tools.autoscale_bench --out docs/autoscaling.jsonl --plot docs/img/autoscaling.png
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rerank_core.config import PACKAGED_MINILM
from rerank_tools.benchmark.loadgen import Load, Outcome

APP = "autoscale-bench"
BACKEND = "scaled"
DEPLOYMENT = f"model-{BACKEND}"


def parse_phases(text: str) -> list[tuple[int, float]]:
    """``"1:30,8:60,1:90"`` -> [(clients, seconds), ...]."""
    phases = []
    for part in text.split(","):
        clients, _, seconds = part.partition(":")
        phases.append((int(clients), float(seconds)))
    if not phases or any(c < 0 or s <= 0 for c, s in phases):
        raise argparse.ArgumentTypeError("phases are clients:seconds with clients >= 0, seconds > 0")
    return phases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", type=parse_phases, default=parse_phases("1:30,8:90,1:90"))
    p.add_argument("--interval-s", type=float, default=2.0)
    p.add_argument("--docs", type=int, default=20, help="documents per request")
    p.add_argument("--model", default=PACKAGED_MINILM,
                   help="the packaged bi-encoder (default) or a cross-encoder directory")  # fmt: skip
    p.add_argument("--num-cpus", type=float, default=0.5, help="CPUs of one model replica")
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--target-ongoing-requests", type=float, default=2)
    p.add_argument("--upscale-delay-s", type=float, default=3)
    p.add_argument("--downscale-delay-s", type=float, default=15)
    p.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2)
    p.add_argument("--out", type=Path, default=Path("autoscaling.jsonl"))
    p.add_argument("--plot", type=Path, default=None, help="PNG of replicas, throughput and p99")
    return p.parse_args(argv)


def service_config(args: argparse.Namespace) -> dict[str, Any]:
    backend: dict[str, Any] = (
        {"type": "bi_encoder", "model": args.model}
        if args.model == PACKAGED_MINILM
        else {"type": "cross_encoder", "model": str(Path(args.model).resolve())}
    )
    backend["serving"] = {
        "num_cpus": args.num_cpus,
        "torch_threads": 1,
        "min_replicas": 1,
        "max_replicas": args.max_replicas,
        "target_ongoing_requests": args.target_ongoing_requests,
        "upscale_delay_s": args.upscale_delay_s,
        "downscale_delay_s": args.downscale_delay_s,
        "max_batch_size": 64,
        "batch_wait_timeout_s": 0.01,
    }
    return {
        "backends": {BACKEND: backend},
        "routes": {"default": {"backends": [BACKEND], "timeout_s": 30}},
        "router": {"num_cpus": 0.1},
    }


def replica_counts() -> tuple[int, int]:
    """(RUNNING, STARTING) replicas of the model deployment, from ``serve.status()``."""
    from ray import serve

    states = serve.status().applications[APP].deployments[DEPLOYMENT].replica_states
    return int(states.get("RUNNING", 0)), int(states.get("STARTING", 0))


def summarize(
    t: float, clients: int, replicas: tuple[int, int], done: list[Outcome], interval_s: float
) -> dict[str, Any]:
    """One interval: load, (running, starting) replicas, and the requests finished in it."""
    ok = sorted(o.elapsed_s for o in done if o.status == 200)
    row: dict[str, Any] = {
        "t_s": round(t, 1),
        "clients": clients,
        "replicas": replicas[0],
        "starting": replicas[1],
        "requests_per_s": round(len(ok) / interval_s, 2),
        "errors": len(done) - len(ok),
        "p50_s": None,
        "p99_s": None,
    }
    if ok:
        row["p50_s"] = round(statistics.median(ok), 4)
        row["p99_s"] = round(ok[min(len(ok) - 1, int(0.99 * len(ok)))], 4)
    return row


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    # Handles report their load every second (Serve's default: 10 s), so scaling follows the load
    # within seconds; it must be set before Ray starts.
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from deployments.app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"service": service_config(args)}), name=APP, route_prefix="/")
        documents = [f"passage {i}: light, water and the sugar plants make" for i in range(args.docs)]
        body = {"query": "how do plants make food", "documents": documents}
        total_s = sum(s for _, s in args.phases)
        start = time.monotonic()
        with Load(f"http://127.0.0.1:{port}/rerank", body, clients=0) as load, tqdm(
            total=round(total_s), unit="s", desc="autoscaling load"
        ) as bar:
            for clients, seconds in args.phases:
                load.set_clients(clients)
                phase_end = time.monotonic() + seconds
                while time.monotonic() < phase_end:
                    tick = time.monotonic()
                    time.sleep(args.interval_s)
                    row = summarize(tick + args.interval_s - start, clients, replica_counts(),
                                    load.done_since(tick), args.interval_s)  # fmt: skip
                    rows.append(row)
                    bar.update(round(args.interval_s))
                    bar.set_postfix(replicas=row["replicas"], rps=row["requests_per_s"])
    finally:
        serve.shutdown()
        ray.shutdown()
    return rows


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].step(t, [r["replicas"] for r in rows], where="post", label="replicas running")
    axes[0].step(t, [r["starting"] for r in rows], where="post", linestyle="--", label="starting")
    axes[0].step(t, [r["clients"] for r in rows], where="post", linestyle=":", label="load clients")
    axes[0].set_ylabel("count")
    axes[0].legend(loc="upper right")
    axes[1].plot(t, [r["requests_per_s"] for r in rows])
    axes[1].set_ylabel("requests/s")
    axes[2].plot(t, [r["p99_s"] for r in rows], label="p99")
    axes[2].plot(t, [r["p50_s"] for r in rows], label="p50")
    axes[2].set_ylabel("latency (s)")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} lines to {args.out}; peak replicas {max(r['replicas'] for r in rows)}")
    if args.plot:
        plot(rows, args.plot, f"autoscaling: 1..{args.max_replicas} replicas of {args.num_cpus:g} CPU, "
             f"target {args.target_ongoing_requests:g} requests")  # fmt: skip
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
