"""Closed-loop load generator: ``concurrency`` workers each send one ``POST /rerank`` after another
with real query/passage traffic, for a bounded time and a bounded number of requests.

Traffic is sampled from a candidates JSONL (trec-dl20): a request is a query with its own BM25
candidates, topped up from other queries' passages when it asks for more documents than a query has.
Only loopback targets are accepted: this tool is for measuring a service on this machine.

Two request shapes: the service's own (``client="service"``, through ``AsyncRerankClient``, which the
naive baseline speaks too) and Infinity's (``client="infinity"``: ``{"query", "documents", "model"}``
in, ``results[].relevance_score`` out), so the peer is measured by the same closed loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from rerank_client.client import AsyncRerankClient
from rerank_core.errors import (
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    RerankError,
)
from rerank_tools.evaluation.loaders import DatasetError, read_candidates
from rerank_tools.latency import latency_summary

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Seconds a worker waits after a refusal for overload before its next request.
REFUSED_BACKOFF_S = 1.0
#: The request shapes ``run_cell`` speaks (see the module docstring).
ClientKind = Literal["service", "infinity"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("service", "infinity")


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash; ``ValueError`` unless it is http(s) on a loopback host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"refusing to send load to {parts.hostname or url!r}: only http(s) on "
            f"{', '.join(sorted(LOOPBACK_HOSTS))} is allowed"
        )
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class RequestSample:
    """One request's query and documents."""

    query: str
    documents: list[str]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(self.query, d) for d in self.documents]


def load_traffic(
    candidates_path: str | Path, docs_per_request: int, count: int, seed: int = 0
) -> list[RequestSample]:
    """``count`` seeded requests of ``docs_per_request`` passages each (see the module docstring)."""
    queries = [q for q in read_candidates(candidates_path) if q.candidates]
    if not queries:
        raise DatasetError(f"{candidates_path}: no query has candidates")
    pool = [c.text for q in queries for c in q.candidates]
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        query = rng.choice(queries)
        docs = [c.text for c in query.candidates[:docs_per_request]]
        while len(docs) < docs_per_request:
            docs.append(rng.choice(pool))
        samples.append(RequestSample(query.query, docs))
    return samples


@dataclass(slots=True)
class CellResult:
    """One sweep cell: throughput, latency percentiles (successful requests) and errors by type."""

    target: str
    concurrency: int
    docs_per_request: int
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    pairs_per_s: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_types: dict[str, int] = field(default_factory=dict)
    #: What ended the cell: "duration" or "max_requests".
    stopped_by: str = "duration"
    #: The slowest refusal for overload (429), milliseconds; 0 when none.
    refused_max_ms: float = 0.0
    #: Requests answered after the cell's ``deadline_s`` (counted in ``requests`` too).
    late: int = 0
    #: Requests that reached the client's own ``timeout_s`` without an answer.
    client_timeouts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "cell", **asdict(self)}


def infinity_body(sample: RequestSample, model: str | None, top_n: int | None) -> dict[str, Any]:
    """Infinity's ``POST /rerank`` body for ``sample`` (documents not echoed back)."""
    body: dict[str, Any] = {
        "query": sample.query,
        "documents": sample.documents,
        "return_documents": False,
    }
    if model:
        body["model"] = model
    if top_n is not None:
        body["top_n"] = top_n
    return body


async def post_infinity(
    http: httpx.AsyncClient, sample: RequestSample, model: str | None, top_n: int | None
) -> list[float]:
    """One Infinity rerank; its relevance scores in input order. Failures raise the typed errors the
    service's client raises, so a cell counts both peers' errors alike."""
    try:
        response = await http.post("/rerank", json=infinity_body(sample, model, top_n))
    except httpx.TimeoutException:
        raise BackendTimeout("request timed out", backend="infinity") from None
    except httpx.TransportError as exc:
        raise BackendUnavailable(type(exc).__name__, backend="infinity") from None
    if response.status_code == 429:
        raise BackendRateLimited("429", backend="infinity")
    if response.status_code != 200:
        raise BackendError(f"HTTP {response.status_code}", backend="infinity")
    scores = [0.0] * len(sample.documents)
    for result in response.json()["results"]:
        scores[result["index"]] = float(result["relevance_score"])
    return scores


async def run_cell(
    url: str,
    samples: Sequence[RequestSample],
    concurrency: int,
    *,
    target: str = "served",
    duration_s: float = 10.0,
    max_requests: int = 10_000,
    warmup_requests: int = 2,
    timeout_s: float = 60.0,
    model: str | None = None,
    top_n: int | None = None,
    api_key: str | None = None,
    refused_backoff_s: float = REFUSED_BACKOFF_S,
    deadline_s: float | None = None,
    client: ClientKind = "service",
) -> CellResult:
    """Run one cell: ``warmup_requests`` unmeasured, then ``concurrency`` workers until
    ``duration_s`` passes or ``max_requests`` have been sent (in-flight requests finish, each
    bounded by ``timeout_s``), in ``client``'s request shape. A worker refused for overload waits
    ``refused_backoff_s`` before its next request (0: it resends at once). Answers slower than
    ``deadline_s`` count as late."""
    url = check_loopback(url)
    if not samples:
        raise ValueError("no request samples")
    docs = len(samples[0].documents)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    refusals: list[float] = []
    timeouts = 0
    sent = 0

    async with requester(client, url, api_key, timeout_s, concurrency, model, top_n) as request:

        async def send(sample: RequestSample) -> None:
            nonlocal timeouts
            started = time.perf_counter()
            try:
                await request(sample)
            except BackendRateLimited as exc:
                errors[exc.code] += 1
                refusals.append(time.perf_counter() - started)
                # As a client honouring the service's Retry-After (1 s by default) would, or not.
                await asyncio.sleep(refused_backoff_s)
            except RerankError as exc:
                errors[exc.code] += 1
                if time.perf_counter() - started >= timeout_s:
                    timeouts += 1
            except DegradedAnswer:
                errors["degraded"] += 1
            else:
                latencies.append(time.perf_counter() - started)

        for i in range(warmup_requests):
            await send(samples[i % len(samples)])
        latencies.clear()
        errors.clear()
        refusals.clear()
        timeouts = 0

        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                sample = samples[sent % len(samples)]
                sent += 1
                await send(sample)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = max(time.perf_counter() - started, 1e-9)

    ok = len(latencies)
    return CellResult(
        target=target,
        concurrency=concurrency,
        docs_per_request=docs,
        requests=ok,
        errors=sum(errors.values()),
        duration_s=elapsed,
        requests_per_s=ok / elapsed,
        pairs_per_s=ok * docs / elapsed,
        error_types=dict(errors),
        stopped_by="max_requests" if sent >= max_requests else "duration",
        refused_max_ms=max(refusals, default=0.0) * 1000,
        late=sum(1 for t in latencies if deadline_s is not None and t > deadline_s),
        client_timeouts=timeouts,
        **latency_summary(latencies),
    )


class DegradedAnswer(Exception):
    """The service answered in the original order (every backend failed): not goodput."""


@asynccontextmanager
async def requester(
    client: ClientKind,
    url: str,
    api_key: str | None,
    timeout_s: float,
    concurrency: int,
    model: str | None,
    top_n: int | None,
) -> AsyncIterator[Callable[[RequestSample], Awaitable[list[float]]]]:
    """One request function of ``client``'s shape, over one connection pool for the cell; it
    returns the relevance scores in input order (``top_n`` unset)."""
    if client == "infinity":
        async with httpx.AsyncClient(
            base_url=url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=concurrency),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        ) as http:
            yield lambda sample: post_infinity(http, sample, model, top_n)
    elif client == "service":
        async with AsyncRerankClient(url, api_key, timeout_s, max_connections=concurrency) as svc:

            async def rerank(sample: RequestSample) -> list[float]:
                answer = await svc.rerank(
                    sample.query, sample.documents, top_n=top_n, model=model, return_documents=False
                )
                if answer.degraded:
                    raise DegradedAnswer(f"answered by {answer.backend}, not by a reranker")
                scores = [0.0] * len(sample.documents)
                for result in answer.results:
                    scores[result.index] = result.score
                return scores

            yield rerank
    else:
        raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENT_KINDS)}")
