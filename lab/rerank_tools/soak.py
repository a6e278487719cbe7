"""Soak test: steady load on a running service for a bounded time, with replicas' memory.

    .venv/bin/rerank-soak --start --duration 600          # deploys serve_config.yaml itself
    .venv/bin/rerank-soak --url http://127.0.0.1:8000     # a service already running here

Every ``--interval`` seconds it prints one JSON line (requests, errors, p50/p99 of that window,
each Serve replica's resident memory); at the end a summary line with the totals and the memory
at start and end. Load goes to 127.0.0.1 only, bounded in time; with ``--start`` it stops what it
started through ``serve.shutdown()`` and ``ray.shutdown()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from rerank_tools.benchmark.loadgen import load_traffic, run_cell


def replica_memory_mb() -> dict[str, float]:
    """Resident memory of each live Serve replica and proxy on this machine, by actor name."""
    import psutil
    from ray.util.state import list_actors

    out: dict[str, float] = {}
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
        name = actor.name or actor.class_name
        if not (name.startswith("SERVE_REPLICA::") or "Proxy" in actor.class_name):
            continue
        try:
            out[name.removeprefix("SERVE_REPLICA::")] = round(
                psutil.Process(actor.pid).memory_info().rss / 2**20, 1
            )
        except psutil.Error:
            continue
    return out


def start_service(config_path: Path) -> str:
    """Start a local Ray and deploy the config's first application on a free loopback port."""
    import ray
    import yaml
    from ray import serve

    from deployments.app import build_app

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app_cfg = yaml.safe_load(config_path.read_text())["applications"][0]
    # The dashboard serves the state API that replica_memory_mb reads.
    ray.init(include_dashboard=True, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_cfg["args"]), name=app_cfg["name"], route_prefix="/")
    return f"http://127.0.0.1:{port}"


async def soak(args: argparse.Namespace, url: str) -> dict[str, Any]:
    samples = load_traffic(args.data, args.docs, 2000, seed=1)
    start_mem = replica_memory_mb()
    print(json.dumps({"kind": "start", "url": url, "replica_rss_mb": start_mem}), flush=True)
    totals = {"requests": 0, "errors": 0}
    worst_p99 = 0.0
    windows = []
    deadline = time.monotonic() + args.duration
    offset = 0
    while time.monotonic() < deadline - 1:
        window = min(args.interval, deadline - time.monotonic())
        cell = await run_cell(
            url,
            samples[offset:] + samples[:offset],
            args.concurrency,
            target="soak",
            duration_s=window,
            max_requests=args.max_requests_per_window,
            warmup_requests=0,
            model=args.model,
        )
        offset = (offset + cell.requests + cell.errors) % len(samples)
        totals["requests"] += cell.requests
        totals["errors"] += cell.errors
        worst_p99 = max(worst_p99, cell.p99_ms)
        line = {
            "kind": "window",
            "elapsed_s": round(args.duration - (deadline - time.monotonic()), 1),
            "requests": cell.requests,
            "errors": cell.errors,
            "error_types": cell.error_types,
            "requests_per_s": round(cell.requests_per_s, 2),
            "p50_ms": round(cell.p50_ms, 1),
            "p99_ms": round(cell.p99_ms, 1),
            "replica_rss_mb": replica_memory_mb(),
        }
        windows.append(line)
        print(json.dumps(line), flush=True)
    end_mem = replica_memory_mb()
    return {
        "kind": "summary",
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "docs_per_request": args.docs,
        **totals,
        "worst_window_p99_ms": round(worst_p99, 1),
        "replica_rss_mb_start": start_mem,
        "replica_rss_mb_end": end_mem,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running service on this machine")
    where.add_argument("--start", action="store_true", help="deploy --config on a local Ray")
    parser.add_argument("--config", type=Path, default=Path("serve_config.yaml"))
    parser.add_argument("--model", default=None, help="route or backend (default route if unset)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per report line")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--docs", type=int, default=20, help="documents per request")
    parser.add_argument("--max-requests-per-window", type=int, default=100_000)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data/trec-dl20/candidates.jsonl"),
        help="candidates.jsonl whose queries and passages make the traffic",
    )
    args = parser.parse_args(argv)
    import ray

    if args.start:
        url = start_service(args.config)
    else:
        ray.init(address="auto", log_to_driver=False)
        url = args.url
    try:
        summary = asyncio.run(soak(args, url))
    finally:
        if args.start:
            from ray import serve

            serve.shutdown()
        ray.shutdown()
    print(json.dumps(summary), flush=True)
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
