"""Admission by expected waiting time: what a caller knows of one model's queue, and the refusal of
a request that could only be answered after its deadline.

Plain Python (no Ray), kept by whoever sends a model its requests (the Router, one per replica):
the pairs it has sent that are not answered yet, and the rate at which answers come back while
some are outstanding. A request is refused before it is sent when the pairs ahead of it and its
own, at that rate, would take longer than its deadline; the refusal says when the queue will have
drained enough to take it, so a client can come back then instead of at once. Bulk requests may
wait only a share of that, so that under overload they are refused before interactive ones.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rerank_core.config import LOCAL_TYPES, ServiceConfig
from rerank_core.errors import BackendRateLimited
from rerank_core.types import Lane

#: Seconds of busy time one rate measurement spans: long enough to cover a few batches, short
#: enough to follow a change of replicas.
RATE_WINDOW_S = 2.0
#: Weight of a new measurement in the rate (an exponential moving average over windows).
RATE_WEIGHT = 0.3
#: The share of the deadline a request's expected wait may take: the rate is measured on past
#: batches and drifts under load, and a request admitted on a wait right at the deadline is work
#: done for an answer that misses it.
DEADLINE_SHARE = 0.8


class ModelQueue:
    """The outstanding pairs of one model, its measured rate and the admission decision.

    ``pairs_per_s`` is the rate assumed until one is measured (None: nothing is refused until
    then). ``deadline_s`` is a request's whole deadline; ``max_wait_s`` the expected wait a
    request may be admitted with (None: ``DEADLINE_SHARE`` of the deadline; never more). A queue
    bounded by time rather than by a deadline's worth of work keeps the model as busy (the
    refused come back within seconds) and answers those it admits in a fraction of the deadline.
    ``batch_pairs`` is the model's batch (``serving.max_batch_size``): a request is answered when
    its batch ends, and the requests that arrive after it share that batch, so up to one batch of
    company comes on top of the pairs ahead of it. ``bulk_share`` is the share of ``max_wait_s``
    a bulk request may be admitted with (``serving.bulk_queue_share``): under overload bulk is
    refused first, and interactive requests, which the model serves ahead of bulk, keep the rest.

    The rate is measured only while at least a batch of pairs is out (the model saturated): with
    less, answers come back at the pace requests arrive, and pairs over busy time is a latency,
    not what the model can do. Taken as a rate, a quiet moment's few pairs a second would stretch
    every attempt deadline (a batch of company at that rate) far past the time a lost replica
    should be given up after.
    """

    def __init__(
        self,
        name: str,
        pairs_per_s: float | None,
        deadline_s: float,
        clock: Callable[[], float] = time.monotonic,
        batch_pairs: int = 0,
        max_wait_s: float | None = None,
        bulk_share: float = 1.0,
    ) -> None:
        self.name = name
        self.assumed_pairs_per_s = pairs_per_s
        self.deadline_s = deadline_s
        share = DEADLINE_SHARE * deadline_s
        #: The longest expected wait a request is admitted with.
        self.max_wait_s = share if max_wait_s is None else min(max_wait_s, share)
        #: The longest expected wait a bulk request is admitted with.
        self.max_bulk_wait_s = bulk_share * self.max_wait_s
        self.batch_pairs = batch_pairs
        self._clock = clock
        #: Pairs sent and not answered yet (nor failed).
        self.pairs_ahead = 0
        #: Pairs out from which the model counts as saturated, and the rate is measured.
        self._saturated_pairs = max(1, batch_pairs)
        #: When the last answer came back (None: never).
        self._last_answer: float | None = None
        #: Set while the model is stalled (see ``record_failure``); created on first use, inside
        #: the event loop that waits on it.
        self._stall: asyncio.Event | None = None
        self._measured: float | None = None
        self._since = clock()
        self._window_busy_s = 0.0
        self._window_pairs = 0

    @property
    def pairs_per_s(self) -> float | None:
        """The rate answers come back at while the model is busy: measured, else assumed."""
        return self._measured if self._measured is not None else self.assumed_pairs_per_s

    def slowest_pairs_per_s(self) -> float | None:
        """The slower of the measured and the assumed rate (an attempt deadline is set by it, so a
        rate measured high never cuts an attempt shorter than the configuration allows)."""
        rates = [r for r in (self._measured, self.assumed_pairs_per_s) if r is not None]
        return min(rates) if rates else None

    def expected_wait_s(self, own_pairs: int = 0) -> float:
        """Seconds until the pairs ahead (and ``own_pairs``) are answered at the current rate;
        0 while no rate is known."""
        rate = self.pairs_per_s
        return (self.pairs_ahead + own_pairs) / rate if rate else 0.0

    @property
    def stalled(self) -> bool:
        """An attempt failed and no answer has come back since it began: the pairs ahead are not
        being answered (a lost replica, its replacement not yet up), so they say nothing of how
        long the next request will wait."""
        return self._stall is not None and self._stall.is_set()

    def record_failure(self, attempt_started: float) -> None:
        """An attempt begun at ``attempt_started`` (this queue's clock) timed out or found its
        replica gone. The model is stalled if nothing was answered since that attempt began; an
        answer meanwhile means the model works and this one attempt was slow."""
        if self._last_answer is None or self._last_answer < attempt_started:
            self.stall_event().set()

    def stall_event(self) -> asyncio.Event:
        """The event that is set while the model is stalled (attempts in flight wait on it to
        shorten their deadlines)."""
        if self._stall is None:
            self._stall = asyncio.Event()
        return self._stall

    def now(self) -> float:
        """This queue's clock."""
        return self._clock()

    def admit(self, n_pairs: int, lane: Lane = "interactive") -> None:
        """Raise ``BackendRateLimited`` (with ``retry_after_s``) when a request of ``n_pairs``
        would be answered after ``max_wait_s`` (a bulk request: ``max_bulk_wait_s``). A request
        that finds nothing ahead of it is always admitted: its own size is bounded by the input
        limits, not by the queue."""
        self._tick()
        if self.pairs_ahead == 0:
            return
        expected = self.expected_wait_s(n_pairs)
        allowed = self.max_bulk_wait_s if lane == "bulk" else self.max_wait_s
        if expected <= allowed:
            return
        who = "a bulk request" if lane == "bulk" else "a request"
        raise BackendRateLimited(
            f"model {self.name} is overloaded: about {expected:.0f}s of work ahead, past the "
            f"{allowed:g}s {who} may wait (its deadline: {self.deadline_s:g}s)",
            backend=self.name,
            retry_after_s=max(1.0, math.ceil(expected - allowed)),
        )

    @contextmanager
    def outstanding(self, n_pairs: int) -> Iterator[None]:
        """Count ``n_pairs`` as ahead of later requests while the block runs; if it ends without
        an exception, and the model was saturated, they count as answered in the rate."""
        self._tick()
        self.pairs_ahead += n_pairs
        answered = False
        try:
            yield
            answered = True
        finally:
            self._tick()
            if answered:
                self._last_answer = self._clock()
                if self._stall is not None:
                    self._stall.clear()
            if answered and self._saturated():
                self._window_pairs += n_pairs
            self.pairs_ahead -= n_pairs
            self._close_window()

    def _saturated(self) -> bool:
        return self.pairs_ahead >= self._saturated_pairs

    def _tick(self) -> None:
        """Add the time since the last event to the window's busy time if the model was
        saturated."""
        now = self._clock()
        if self._saturated():
            self._window_busy_s += now - self._since
        self._since = now

    def _close_window(self) -> None:
        if self._window_busy_s < RATE_WINDOW_S:
            return
        # A window without a single answer (a lost replica, every attempt failing) says nothing
        # of the rate of a healthy model: it is dropped rather than taken as a rate of zero.
        if self._window_pairs > 0:
            sample = self._window_pairs / self._window_busy_s
            self._measured = (
                sample
                if self._measured is None
                else (1 - RATE_WEIGHT) * self._measured + RATE_WEIGHT * sample
            )
        self._window_busy_s = 0.0
        self._window_pairs = 0


def model_queues(
    service: ServiceConfig, clock: Callable[[], float] = time.monotonic
) -> dict[str, ModelQueue]:
    """A queue for each local model of ``service``, held against the request deadline
    (``limits.request_timeout_s``) and ``router.max_queue_wait_s``, starting from the model's
    ``serving.pairs_per_s``, batching ``serving.max_batch_size`` pairs and leaving bulk
    ``serving.bulk_queue_share`` of the wait."""
    return {
        name: ModelQueue(
            name,
            cfg.serving.pairs_per_s,
            service.limits.request_timeout_s,
            clock=clock,
            batch_pairs=cfg.serving.max_batch_size,
            max_wait_s=service.router.max_queue_wait_s,
            bulk_share=cfg.serving.bulk_queue_share,
        )
        for name, cfg in service.backends.items()
        if cfg.type in LOCAL_TYPES
    }
