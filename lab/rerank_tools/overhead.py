"""The fixed cost of a request through Serve's proxy, the router and the model's handle, and what
the score cache saves.

Against a running service whose model has the score cache on, two series of sequential requests
with the same documents: "cold", each with a query never sent before (every pair reaches the
model), and "warm", one request repeated (after the first, every pair is a cache hit, so the model
does no compute and what is left is the path itself). For each it prints the client's round trip
and the router's own ``latency`` (handle, replica and back), whose difference is the HTTP client,
Serve's proxy and the router's parsing and answer. Usage:

    python -m rerank_tools.overhead --url http://127.0.0.1:8011 --docs 10 --requests 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Sequence

from tqdm import tqdm

from rerank_client import RerankClient
from rerank_tools.benchmark.loadgen import check_loopback, load_traffic


def _series(
    client: RerankClient, query_of: list[str], documents: Sequence[str], model: str | None, label: str
) -> dict[str, float]:
    round_trips: list[float] = []
    in_router: list[float] = []
    for query in tqdm(query_of, desc=label, unit="request"):
        started = time.perf_counter()
        answer = client.rerank(query, documents, model=model, return_documents=False)
        round_trips.append(time.perf_counter() - started)
        in_router.append(answer.latency or 0.0)
    return {
        "client_p50_ms": statistics.median(round_trips) * 1000,
        "router_p50_ms": statistics.median(in_router) * 1000,
        "proxy_and_http_p50_ms": statistics.median(
            r - i for r, i in zip(round_trips, in_router, strict=True)
        )
        * 1000,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Measure and print one JSON object: the cold and warm series and the warm speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the running service (loopback only)")
    parser.add_argument("--model", help="route or backend name (a local model with the cache on)")
    parser.add_argument("--docs", type=int, default=10, help="documents per request")
    parser.add_argument("--requests", type=int, default=100, help="requests in each series")
    parser.add_argument(
        "--candidates",
        default="../shared/data/trec-dl20/candidates.jsonl",
        help="TREC DL 2020 candidates: the request's query and documents",
    )
    args = parser.parse_args(argv)
    sample = load_traffic(args.candidates, args.docs, 1)[0]
    with RerankClient(check_loopback(args.url), timeout=300) as client:
        cold_queries = [f"{sample.query} {uuid.uuid4().hex}" for _ in range(args.requests)]
        cold = _series(client, cold_queries, sample.documents, args.model, "cold")
        client.rerank(sample.query, sample.documents, model=args.model, return_documents=False)
        warm = _series(
            client, [sample.query] * args.requests, sample.documents, args.model, "warm"
        )
    report: dict[str, object] = {
        "docs": args.docs,
        "requests": args.requests,
        "cold": cold,
        "warm": warm,
        "warm_speedup": cold["client_p50_ms"] / warm["client_p50_ms"],
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
