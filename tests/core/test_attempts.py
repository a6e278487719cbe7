"""Attempt deadlines bound by the work a request carries, and hedged attempts (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from rerank_core.admission import ModelQueue
from rerank_core.attempts import AttemptDeadline, attempt_timeout, hedged
from rerank_core.backends.base import Backend
from rerank_core.config import BreakerConfig, RouteConfig, RouteSettings
from rerank_core.errors import AllBackendsFailed, BackendRateLimited, BackendUnavailable
from rerank_core.fallback import CircuitBreaker, build_chain
from rerank_core.types import Answer, RankRequest

ROUTE = RouteSettings(timeout_s=60, min_timeout_s=2, attempt_slack=3)


def queue(pairs_per_s: float | None, ahead: int = 0) -> ModelQueue:
    q = ModelQueue("m", pairs_per_s, deadline_s=60)
    q.pairs_ahead = ahead
    return q


def test_a_small_request_gets_the_floor_and_a_large_one_its_time() -> None:
    q = queue(50.0)
    assert attempt_timeout(ROUTE, 10, q) == 2.0  # 0.2 s of work: the floor
    assert attempt_timeout(ROUTE, 100, q) == pytest.approx(6.0)  # 2 s of work, 3x
    assert attempt_timeout(ROUTE, 2000, q) == 60.0  # 40 s of work: the ceiling


def test_the_work_ahead_counts() -> None:
    assert attempt_timeout(ROUTE, 10, queue(50.0, ahead=490)) == pytest.approx(30.0)


def test_a_request_waits_for_the_batch_it_shares() -> None:
    # Alone in the queue, 10 pairs take 0.2 s at 50 pairs/s; the 128 pairs of the requests sent
    # just after it share its batch, which ends after 2.76 s: 3x that, not the 2 s floor.
    batched = ModelQueue("m", 50.0, deadline_s=60, batch_pairs=128)
    assert attempt_timeout(ROUTE, 10, batched) == pytest.approx(3 * 138 / 50)


def test_without_a_rate_or_a_queue_the_route_timeout_holds() -> None:
    assert attempt_timeout(ROUTE, 10, None) == 60.0
    assert attempt_timeout(ROUTE, 10, queue(None)) == 60.0


def test_hedge_after_is_a_share_of_the_attempt() -> None:
    assert AttemptDeadline(ROUTE).hedge_after_s(6.0) is None
    hedging = AttemptDeadline(RouteSettings(hedge_after=0.5))
    assert hedging.hedge_after_s(6.0) == 3.0


class Calls:
    """A call whose n-th invocation sleeps, answers or raises as scripted."""

    def __init__(self, *script: float | Exception) -> None:
        self.script = list(script)
        self.started = 0
        self.cancelled = 0

    async def __call__(self) -> int:
        n = self.started
        self.started += 1
        step = self.script[n]
        if isinstance(step, Exception):
            raise step
        try:
            await asyncio.sleep(step)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return n


async def test_no_hedge_before_the_answer_is_overdue() -> None:
    calls = Calls(0.01, 0.01)
    assert await hedged(calls, 0.5) == 0
    assert calls.started == 1


async def test_the_hedge_answers_for_a_silent_first_call() -> None:
    calls = Calls(10.0, 0.01)
    assert await hedged(calls, 0.05) == 1
    assert calls.started == 2 and calls.cancelled == 1


async def test_a_refused_hedge_leaves_the_first_call_to_answer() -> None:
    calls = Calls(0.2, BackendRateLimited("full", backend="m"))
    assert await hedged(calls, 0.05) == 0


async def test_one_failed_call_does_not_fail_a_hedged_attempt() -> None:
    calls = Calls(0.2, BackendUnavailable("lost", backend="m"))
    assert await hedged(calls, 0.05) == 0
    both = Calls(0.1, BackendUnavailable("lost too", backend="m"))
    both.script[0] = BackendUnavailable("lost", backend="m")
    with pytest.raises(BackendUnavailable):
        await hedged(both, 0.05)


class SilentBackend(Backend):
    """A model replica on a lost node: never answers."""

    name = "model"

    def __init__(self) -> None:
        self.calls = 0

    async def answer(self, request: RankRequest) -> Answer:
        self.calls += 1
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_small_request_on_a_lost_replica_fails_at_the_floor_not_the_ceiling() -> None:
    route = RouteConfig(backends=["model"], timeout_s=30, min_timeout_s=0.05, retries=1,
                        backoff_s=0, last_resort=False)  # fmt: skip
    backend = SilentBackend()
    chain = build_chain(
        route,
        {"model": backend},
        {"model": CircuitBreaker(BreakerConfig())},
        {"model": queue(1000.0)},
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AllBackendsFailed, match=r"did not answer within 0\.05s"):
        await chain.rerank("q", ["a", "b"])
    assert loop.time() - started < 5
    assert backend.calls == 2


def test_a_stalled_model_owes_an_attempt_only_its_own_work() -> None:
    q = queue(50.0, ahead=490)
    assert attempt_timeout(ROUTE, 10, q) == pytest.approx(30.0)
    q.record_failure(attempt_started=q.now())  # nothing answered since that attempt began
    assert q.stalled
    assert attempt_timeout(ROUTE, 10, q) == 2.0  # the pairs ahead are not being answered


def test_an_answer_since_the_attempt_began_is_no_stall_and_ends_one() -> None:
    q = queue(50.0)
    begun = q.now()
    with q.outstanding(10):
        pass  # answered
    q.record_failure(attempt_started=begun)  # one slow attempt of a model that answers
    assert not q.stalled
    q.record_failure(attempt_started=q.now() + 1)
    assert q.stalled
    with q.outstanding(10):
        pass
    assert not q.stalled, "an answer ends the stall"


async def test_attempts_in_flight_are_cut_when_their_model_stalls() -> None:
    route = RouteSettings(timeout_s=60, min_timeout_s=0.2, attempt_slack=1)
    q = ModelQueue("m", 1000.0, deadline_s=60)
    q.pairs_ahead = 10_000  # 10 s of work ahead at the assumed rate
    deadline = AttemptDeadline(route, q)
    assert deadline.timeout_s(10) == pytest.approx(10.01)

    async def never() -> None:
        await asyncio.sleep(3600)

    async def lost_elsewhere() -> None:
        await asyncio.sleep(0.05)
        q.record_failure(attempt_started=q.now() - 1)  # another attempt found the replica gone

    loop = asyncio.get_running_loop()
    start = loop.time()
    failure = asyncio.ensure_future(lost_elsewhere())
    with pytest.raises(TimeoutError):
        await deadline.run(never(), 10)
    await failure
    assert 0.15 < loop.time() - start < 1.0, "cut to its own work's 0.2 s floor, not 10 s"


async def test_a_timed_out_attempt_stalls_a_silent_model() -> None:
    route = RouteSettings(timeout_s=0.1, min_timeout_s=0.1, attempt_slack=1)
    q = ModelQueue("m", 1000.0, deadline_s=60)
    with pytest.raises(TimeoutError):
        await AttemptDeadline(route, q).run(asyncio.sleep(3600), 10)
    assert q.stalled


async def test_a_request_the_model_cannot_take_or_a_full_queue_is_no_stall() -> None:
    from rerank_core.errors import BackendBadRequest

    q = ModelQueue("m", 1000.0, deadline_s=60)
    deadline = AttemptDeadline(RouteSettings(timeout_s=1, min_timeout_s=1), q)
    for error in (BackendBadRequest("cannot take it"), BackendRateLimited("full")):

        async def refuse(error: Exception = error) -> None:
            raise error

        with pytest.raises(type(error)):
            await deadline.run(refuse(), 10)
        assert not q.stalled
    with pytest.raises(BackendUnavailable):
        await deadline.run(_raise(BackendUnavailable("replica gone")), 10)
    assert q.stalled


async def _raise(error: Exception) -> None:
    raise error
