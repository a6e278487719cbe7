"""A route's fallback chain: backends in order, deadlines, bounded retries, circuit breakers.

Plain Python over the ``Backend`` interface, so it is tested without Ray. Every ``BackendError``
falls back to the next backend: the retryable ones (timeout, rate limit, unavailable) after the
member's retries, the others (a vendor's refusal of this service's credentials, or of a request
over the vendor's own limits) at once, since the same call would fail the same way again. Only the
caller's own bad input stops a route, and that is an ``InvalidRequest`` raised before any backend
is asked, not a ``BackendError``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rerank_core.admission import ModelQueue
from rerank_core.attempts import AttemptDeadline, hedged
from rerank_core.backends.base import Backend
from rerank_core.config import BreakerConfig, RouteConfig
from rerank_core.errors import (
    AllBackendsFailed,
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
)
from rerank_core.types import (
    Answer,
    LongDocuments,
    RankedResult,
    RankRequest,
    Scored,
    Skip,
)

log = logging.getLogger(__name__)

#: Name a degraded answer gives as its backend.
LAST_RESORT = "original_order"


class CircuitBreaker:
    """Closed; open after ``failures`` consecutive failures, or at once when the backend refuses
    this service's credentials; after ``reset_s`` one probe is let in (half-open): its success
    closes the breaker, its failure opens it again. ``reason`` says why it last opened."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        #: Why the breaker last opened (None while closed).
        self.reason: str | None = None

    @property
    def state(self) -> str:
        """"closed", "open" or "half_open"."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.config.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False
        self.reason = None

    def record_refusal(self) -> None:
        """The backend refused for overload: it is up, so this neither counts as a failure nor
        closes the breaker; a half-open probe may be let in again."""
        self._probing = False

    def record_failure(self, reason: str) -> None:
        self._probing = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.config.failures:
            self.open(reason)

    def open(self, reason: str) -> None:
        """Open now, whatever the count: a backend that refused this service's credentials
        would refuse every request until its key is changed."""
        self._probing = False
        self._opened_at = self._clock()
        self.reason = reason


@dataclass
class ChainMember:
    """One backend of a chain with its per-attempt deadline and retry budget."""

    backend: Backend
    breaker: CircuitBreaker
    timeout_s: float = 10.0
    retries: int = 1
    backoff_s: float = 0.05
    #: The deadline by the work an attempt carries, and its hedge (None: ``timeout_s``, no hedge).
    deadline: AttemptDeadline | None = None


class FallbackChain:
    """Try each member in order; the first answer wins.

    When all fail, ``last_resort`` decides: the original order with ``degraded=True``, or
    ``AllBackendsFailed`` naming what failed. When every backend refused for overload
    (``BackendRateLimited``, e.g. a model's full queue), the chain raises that refusal instead, so
    the caller is told to come back later rather than given a degraded answer; an overloaded backend
    is routed around but does not count against its breaker. Breakers are shared per backend (pass
    the same ``CircuitBreaker`` to every chain that uses a backend).
    """

    def __init__(
        self,
        members: Sequence[ChainMember],
        *,
        last_resort: bool = True,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        if not members:
            raise ValueError("a fallback chain needs at least one backend")
        self.members = list(members)
        self.last_resort = last_resort
        self._sleep = sleep

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: LongDocuments | None = None,
    ) -> RankedResult:
        """``run`` on a request made of these arguments."""
        return await self.run(RankRequest(query, documents, top_n, long_documents))

    async def run(self, request: RankRequest) -> RankedResult:
        """The first member's answer to ``request``, as the class describes."""
        skipped: list[Skip] = []
        refusals: list[BackendRateLimited] = []
        for position, member in enumerate(self.members):
            name = member.backend.name
            if not member.breaker.allow():
                skipped.append(Skip(name, "circuit breaker open"))
                continue
            try:
                answer = await self._attempt(member, request)
            except BackendError as exc:
                reason = f"{exc.code}: {exc.message}"
                if isinstance(exc, BackendAuthError):
                    member.breaker.open(reason)
                elif isinstance(exc, BackendRateLimited):
                    member.breaker.record_refusal()
                    refusals.append(exc)
                elif exc.retryable:
                    member.breaker.record_failure(reason)
                else:
                    # The backend is up and refused this request for its own limits (too many
                    # documents, too long a query): no sign of a failing backend.
                    member.breaker.record_refusal()
                skipped.append(Skip(name, reason))
                log.warning("backend %s failed (%s); trying the next", name, exc.code)
                continue
            member.breaker.record_success()
            return RankedResult(
                results=answer.results,
                backend=name,
                fallback=position > 0,
                skipped=skipped,
                timing=answer.timing,
            )
        if refusals and len(refusals) == len(skipped):
            raise refusals[-1]
        if not self.last_resort:
            raise AllBackendsFailed(
                "every backend of this route failed: "
                + "; ".join(f"{s.backend}: {s.reason}" for s in skipped),
                skipped=[{"backend": s.backend, "reason": s.reason} for s in skipped],
            )
        documents, top_n = request.documents, request.top_n
        n = len(documents) if top_n is None else min(top_n, len(documents))
        return RankedResult(
            results=[Scored(index=i, score=0.0) for i in range(n)],
            backend=LAST_RESORT,
            fallback=True,
            degraded=True,
            skipped=skipped,
        )

    async def _attempt(self, member: ChainMember, request: RankRequest) -> Answer:
        """The member's answer, retrying retryable errors; a non-retryable one is raised at once."""
        name = member.backend.name
        for attempt in range(member.retries + 1):
            deadline = member.deadline
            n_pairs = len(request.documents)
            timeout_s = member.timeout_s if deadline is None else deadline.timeout_s(n_pairs)
            try:
                call = hedged(
                    lambda: member.backend.answer(request),
                    None if deadline is None else deadline.hedge_after_s(timeout_s),
                )
                if deadline is None:
                    return await asyncio.wait_for(call, timeout=timeout_s)
                return await deadline.run(call, n_pairs, timeout_s)
            except TimeoutError:
                error: BackendError = BackendTimeout(
                    f"{name} did not answer within {timeout_s:g}s", backend=name
                )
            except BackendError as exc:
                if not exc.retryable:
                    raise
                error = exc
            if attempt < member.retries:
                await self._sleep(member.backoff_s * (2**attempt))
        raise error


def build_chain(
    route: RouteConfig,
    backends: Mapping[str, Backend],
    breakers: Mapping[str, CircuitBreaker],
    queues: Mapping[str, ModelQueue] | None = None,
) -> FallbackChain:
    """The chain a route describes, over already-built backends and their shared breakers; a
    backend with a queue in ``queues`` (a local model) gets attempts bounded by their work."""
    members = [
        ChainMember(
            backend=backends[name],
            breaker=breakers[name],
            timeout_s=route.timeout_s,
            retries=route.retries,
            backoff_s=route.backoff_s,
            deadline=AttemptDeadline(route, (queues or {}).get(name)),
        )
        for name in route.backends
    ]
    return FallbackChain(members, last_resort=route.last_resort)
