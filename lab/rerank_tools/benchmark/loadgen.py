"""The project's one load generator: closed-loop HTTP load on a service on this machine, each of
``concurrency`` workers sending its next request when the last one is answered.

Two ways to use it:

- ``run_cell`` measures: real query/passage traffic for a bounded time and a bounded number of
  requests, summed up as a ``CellResult`` (throughput, latency percentiles of the answers, errors by
  type; a degraded answer is an error, not goodput). ``measure`` runs the same loop and returns the
  raw ``Tally``, which loops in several client processes add up (``rerank_tools.gpu_check``).
- ``Load`` records: one fixed body sent from a background thread while a ``with`` block does
  something else (kills a node, waits for autoscaling), every request's ``Outcome`` (HTTP status,
  order of the results, degraded or not) kept as it finishes. ``OpenLoad`` does the same as the
  world loads a service (open loop): independent requests at a fixed rate, each on a connection
  of its own, however many are still waiting for their answers.

Traffic is sampled from a candidates JSONL (trec-dl20): a request is a query with its own BM25
candidates, topped up from other queries' passages when it asks for more documents than a query has.
Only loopback targets are accepted: this tool is for measuring a service on this machine.

Two request shapes for ``run_cell``: the service's own (``client="service"``, through
``AsyncRerankClient``, which the naive baseline speaks too) and Infinity's (``client="infinity"``:
``{"query", "documents", "model"}`` in, ``results[].relevance_score`` out), so the peer is measured
by the same closed loop.
"""

from __future__ import annotations

import asyncio
import random
import threading
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
from rerank_client.errors import ServiceTimeout, ServiceUnreachable
from rerank_core.errors import BackendError, BackendRateLimited, RerankError
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
        raise ServiceTimeout("request timed out") from None
    except httpx.TransportError as exc:
        raise ServiceUnreachable(type(exc).__name__) from None
    if response.status_code == 429:
        raise BackendRateLimited("429", backend="infinity")
    if response.status_code != 200:
        raise BackendError(f"HTTP {response.status_code}", backend="infinity")
    scores = [0.0] * len(sample.documents)
    for result in response.json()["results"]:
        scores[result["index"]] = float(result["relevance_score"])
    return scores


@dataclass(slots=True)
class Tally:
    """What a closed loop's measured requests saw, raw, so that the loops of several client
    processes add up (``merge``) before they are summed up."""

    #: Seconds each successful request took.
    latencies_s: list[float] = field(default_factory=list)
    #: Failed requests by error type ("degraded" for an answer in the original order).
    errors: Counter[str] = field(default_factory=Counter)
    #: Seconds each refusal for overload (429) took.
    refusals_s: list[float] = field(default_factory=list)
    #: Requests that reached the client's own ``timeout_s`` without an answer.
    client_timeouts: int = 0
    #: Requests sent (measured ones only).
    sent: int = 0
    #: Seconds from the first measured request to the last answer.
    elapsed_s: float = 0.0

    def merge(self, other: Tally) -> None:
        """Add ``other``'s requests, as loops that ran side by side (the longer one's duration)."""
        self.latencies_s += other.latencies_s
        self.errors.update(other.errors)
        self.refusals_s += other.refusals_s
        self.client_timeouts += other.client_timeouts
        self.sent += other.sent
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)


async def closed_loop(workers: int, send: Callable[[], Awaitable[None]], more: Callable[[], bool]) -> None:
    """``workers`` coroutines, each awaiting ``send()`` one after another while ``more()`` holds."""

    async def worker() -> None:
        while more():
            await send()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def measure(
    url: str,
    samples: Sequence[RequestSample],
    concurrency: int,
    *,
    duration_s: float = 10.0,
    max_requests: int = 10_000,
    warmup_requests: int = 2,
    warmup_s: float = 0.0,
    timeout_s: float = 60.0,
    model: str | None = None,
    top_n: int | None = None,
    api_key: str | None = None,
    refused_backoff_s: float = REFUSED_BACKOFF_S,
    client: ClientKind = "service",
) -> Tally:
    """The closed loop of ``run_cell`` (its arguments), returning what it saw unsummed. Before the
    measurement, ``warmup_requests`` are sent one at a time and then ``concurrency`` workers send
    for ``warmup_s`` seconds, both unmeasured."""
    url = check_loopback(url)
    if not samples:
        raise ValueError("no request samples")

    async with requester(client, url, api_key, timeout_s, concurrency, model, top_n) as request:

        async def send(sample: RequestSample, tally: Tally) -> None:
            started = time.perf_counter()
            try:
                await request(sample)
            except BackendRateLimited as exc:
                tally.errors[exc.code] += 1
                tally.refusals_s.append(time.perf_counter() - started)
                # As a client honouring the service's Retry-After (1 s by default) would, or not.
                await asyncio.sleep(refused_backoff_s)
            except RerankError as exc:
                tally.errors[exc.code] += 1
                if time.perf_counter() - started >= timeout_s:
                    tally.client_timeouts += 1
            except DegradedAnswer:
                tally.errors["degraded"] += 1
            else:
                tally.latencies_s.append(time.perf_counter() - started)

        async def loop(seconds: float, limit: int) -> Tally:
            tally = Tally()
            until = time.perf_counter() + seconds

            async def send_next() -> None:
                sample = samples[tally.sent % len(samples)]
                tally.sent += 1
                await send(sample, tally)

            started = time.perf_counter()
            await closed_loop(
                concurrency, send_next, lambda: tally.sent < limit and time.perf_counter() < until
            )
            tally.elapsed_s = max(time.perf_counter() - started, 1e-9)
            return tally

        for i in range(warmup_requests):
            await send(samples[i % len(samples)], Tally())
        if warmup_s > 0:
            await loop(warmup_s, max_requests)
        return await loop(duration_s, max_requests)


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
    tally = await measure(
        url,
        samples,
        concurrency,
        duration_s=duration_s,
        max_requests=max_requests,
        warmup_requests=warmup_requests,
        timeout_s=timeout_s,
        model=model,
        top_n=top_n,
        api_key=api_key,
        refused_backoff_s=refused_backoff_s,
        client=client,
    )
    ok, docs, elapsed = len(tally.latencies_s), len(samples[0].documents), tally.elapsed_s
    return CellResult(
        target=target,
        concurrency=concurrency,
        docs_per_request=docs,
        requests=ok,
        errors=sum(tally.errors.values()),
        duration_s=elapsed,
        requests_per_s=ok / elapsed,
        pairs_per_s=ok * docs / elapsed,
        error_types=dict(tally.errors),
        stopped_by="max_requests" if tally.sent >= max_requests else "duration",
        refused_max_ms=max(tally.refusals_s, default=0.0) * 1000,
        late=sum(1 for t in tally.latencies_s if deadline_s is not None and t > deadline_s),
        client_timeouts=tally.client_timeouts,
        **latency_summary(tally.latencies_s),
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


#: The answer headers an ``Outcome`` keeps, as sent: when to come back, and the state of the quota.
LIMIT_HEADERS = ("Retry-After", "RateLimit", "RateLimit-Policy")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request of a ``Load``: when it started (monotonic seconds), how long it took, its HTTP
    status (None: no answer: a client time-out or a refused connection), the order of the results
    (200 only), for any other status the start of the error's message, and whether a 200 was the
    route's degraded last resort (the original order). For any other status, ``code`` is the error
    body's code; ``limits`` holds the answer's ``LIMIT_HEADERS`` that were sent; ``timed_out`` says
    that no answer came within the client's own time-out."""

    started: float
    elapsed_s: float
    status: int | None
    order: list[int] | None
    detail: str | None = None
    degraded: bool = False
    code: str | None = None
    limits: dict[str, str] = field(default_factory=dict)
    timed_out: bool = False


def error_code(response: httpx.Response) -> str | None:
    """The code of an error answer's JSON body (``{"error": {"code": ...}}``, or the wire's
    ``type``); None when the body is no such object (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or error.get("type")
    return str(code) if code is not None else None


async def post_outcome(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Outcome:
    """``body`` posted to ``url`` through ``http``, as an ``Outcome``; a client time-out or a
    connection failure is an outcome with status None, never an exception."""
    started = time.monotonic()
    status: int | None = None
    order: list[int] | None = None
    detail: str | None = None
    degraded = False
    code: str | None = None
    limits: dict[str, str] = {}
    timed_out = False
    try:
        resp = await http.post(url, json=body)
        status = resp.status_code
        limits = {h: resp.headers[h] for h in LIMIT_HEADERS if h in resp.headers}
        if status == 200:
            answer = resp.json()
            order = [r["index"] for r in answer["results"]]
            degraded = bool(answer.get("degraded", False))
        else:
            detail = resp.text[:200]
            code = error_code(resp)
    except httpx.HTTPError as exc:
        detail = type(exc).__name__
        timed_out = isinstance(exc, httpx.TimeoutException)
    elapsed = time.monotonic() - started
    return Outcome(started, elapsed, status, order, detail, degraded, code, limits, timed_out)


class Load:
    """``clients`` closed-loop clients sending ``body`` to ``url`` while the context is open, from
    an event loop in a background thread; ``outcomes`` holds every request's ``Outcome`` in the
    order they finished.

    ``timeout_s`` is the client's own deadline: a request that reaches it is recorded with status
    None, as a hung request.
    """

    def __init__(self, url: str, body: dict[str, Any], clients: int = 4, timeout_s: float = 30.0) -> None:
        self.url = check_loopback(url)
        self.body = body
        self.clients = clients
        self.timeout_s = timeout_s
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="load", daemon=True)
        self._http: httpx.AsyncClient | None = None
        self._running: asyncio.Future[None] | None = None
        self._stopping = False

    async def _send(self) -> None:
        assert self._http is not None
        outcome = await post_outcome(self._http, self.url, self.body)
        with self._lock:
            self.outcomes.append(outcome)

    async def _restart(self, clients: int) -> None:
        if self._running is not None:
            self._stopping = True
            await self._running
        self._stopping = False
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s, limits=httpx.Limits(max_connections=None))
        self._running = asyncio.ensure_future(closed_loop(clients, self._send, lambda: not self._stopping))

    def set_clients(self, clients: int) -> None:
        """Change the number of clients: each running one finishes its request and stops, then
        ``clients`` start; no outcome is lost."""
        asyncio.run_coroutine_threadsafe(self._restart(clients), self._loop).result()
        self.clients = clients

    def done_since(self, since: float) -> list[Outcome]:
        """Outcomes of requests that finished at or after ``since`` (monotonic seconds)."""
        with self._lock:
            return [o for o in self.outcomes if o.started + o.elapsed_s >= since]

    def __enter__(self) -> Load:
        self._thread.start()
        self.set_clients(self.clients)
        return self

    def __exit__(self, *exc: object) -> None:
        self.set_clients(0)
        if self._http is not None:
            asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class OpenLoad:
    """``count`` requests of ``body`` sent to ``url`` at ``rate`` a second from a background
    thread, each on a new connection and none waiting for another (open loop), while the ``with``
    block does something else; ``outcomes`` holds each one's ``Outcome`` as it finishes, and
    leaving the block waits for the last answer (or its client time-out, ``timeout_s``)."""

    def __init__(
        self, url: str, body: dict[str, Any], rate: float, count: int, timeout_s: float = 30.0
    ) -> None:
        if rate <= 0 or count < 1:
            raise ValueError("an open-loop load needs a positive rate and at least one request")
        self.url = check_loopback(url)
        self.body = body
        self.rate = rate
        self.count = count
        self.timeout_s = timeout_s
        self.outcomes: list[Outcome] = []
        #: Monotonic time of the first request.
        self.started = 0.0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="open-load")

    async def _one(self, index: int) -> None:
        await asyncio.sleep(max(0.0, self.started + index / self.rate - time.monotonic()))
        # A client of its own: a new connection, as independent clients make.
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            outcome = await post_outcome(http, self.url, self.body)
        with self._lock:
            self.outcomes.append(outcome)

    async def _run(self) -> None:
        self.started = time.monotonic()
        await asyncio.gather(*(self._one(i) for i in range(self.count)))

    def in_flight(self) -> int:
        """Requests sent and not yet answered (nor timed out)."""
        sent = min(self.count, int((time.monotonic() - self.started) * self.rate) + 1)
        with self._lock:
            return sent - len(self.outcomes)

    def __enter__(self) -> OpenLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()
