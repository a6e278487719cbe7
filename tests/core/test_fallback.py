"""The fallback chain and circuit breaker over the Backend interface (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from rerank_core.backends.base import Backend
from rerank_core.config import BreakerConfig
from rerank_core.errors import (
    AllBackendsFailed,
    BackendAuthError,
    BackendBadRequest,
    BackendError,
    BackendRateLimited,
    BackendUnavailable,
    InvalidRequest,
)
from rerank_core.fallback import LAST_RESORT, ChainMember, CircuitBreaker, FallbackChain
from rerank_core.types import Answer, RankRequest, Scored, top_n_of


class ScriptedBackend(Backend):
    """Answers by reversing the input, or raises/sleeps as scripted, counting its calls."""

    def __init__(self, name: str, script: list[BackendError | float | None] | None = None) -> None:
        self.name = name
        self.script = list(script or [])
        self.calls = 0

    async def answer(self, request: RankRequest) -> Answer:
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BackendError):
            raise step
        if isinstance(step, float):
            await asyncio.sleep(step)
        n = len(request.documents)
        return Answer(top_n_of([Scored(i, (i + 1) / n) for i in range(n)], request.top_n))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(_: float) -> None:
    return None


def member(backend: Backend, breaker: CircuitBreaker | None = None, **kw: float) -> ChainMember:
    return ChainMember(
        backend=backend,
        breaker=breaker or CircuitBreaker(BreakerConfig(failures=3, reset_s=10)),
        **kw,  # type: ignore[arg-type]
    )


DOCS = ["a", "b", "c", "d"]


async def test_first_backend_answers() -> None:
    first, second = ScriptedBackend("first"), ScriptedBackend("second")
    chain = FallbackChain([member(first), member(second)], sleep=no_sleep)
    result = await chain.rerank("q", DOCS, 2)
    assert result.backend == "first" and not result.fallback and not result.degraded
    assert [s.index for s in result.results] == [3, 2]
    assert second.calls == 0


async def test_retry_then_success_on_same_backend() -> None:
    flaky = ScriptedBackend("flaky", [BackendRateLimited("429", backend="flaky")])
    chain = FallbackChain([member(flaky, retries=1)], sleep=no_sleep)
    result = await chain.rerank("q", DOCS)
    assert result.backend == "flaky" and flaky.calls == 2 and not result.fallback


@pytest.mark.parametrize(
    "error",
    [
        BackendUnavailable("500", backend="x"),
        BackendRateLimited("429", backend="x"),
        0.5,  # slower than the member's timeout
    ],
)
async def test_retryable_failure_falls_back(error: BackendError | float) -> None:
    bad = ScriptedBackend("bad", [error, error])
    good = ScriptedBackend("good")
    chain = FallbackChain(
        [member(bad, retries=1, timeout_s=0.05), member(good)], sleep=no_sleep
    )
    result = await chain.rerank("q", DOCS)
    assert result.backend == "good" and result.fallback and not result.degraded
    assert bad.calls == 2
    assert [s.backend for s in result.skipped] == ["bad"]
    assert result.skipped[0].reason.split(":")[0] in {
        "backend_unavailable",
        "rate_limited",
        "backend_timeout",
    }


@pytest.mark.parametrize(
    "error",
    [
        BackendBadRequest("cohere answered 400: too many documents", backend="bad"),
        BackendAuthError("bad rejected the credentials (401)", backend="bad"),
        BackendAuthError("bad rejected the credentials (403)", backend="bad"),
    ],
)
async def test_a_vendor_refusal_falls_back_at_once_without_retries(error: BackendError) -> None:
    bad = ScriptedBackend("bad", [error] * 4)
    good = ScriptedBackend("good")
    chain = FallbackChain([member(bad, retries=3), member(good)], sleep=no_sleep)
    result = await chain.rerank("q", DOCS)
    assert result.backend == "good" and result.fallback and not result.degraded
    assert bad.calls == 1, "the same call would be refused again: no retry"
    assert result.skipped[0].reason == f"{error.code}: {error.message}"


async def test_an_auth_refusal_opens_the_breaker_at_once_with_its_reason() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=5, reset_s=30), clock=clock)
    revoked = ScriptedBackend("api", [BackendAuthError("api rejected the credentials (401)")])
    good = ScriptedBackend("local")
    chain = FallbackChain([member(revoked, breaker, retries=0), member(good)], sleep=no_sleep)
    assert (await chain.rerank("q", DOCS)).backend == "local"
    assert breaker.state == "open"
    assert breaker.reason == "backend_auth_failed: api rejected the credentials (401)"
    assert (await chain.rerank("q", DOCS)).skipped[0].reason == "circuit breaker open"
    assert revoked.calls == 1
    clock.now += 31
    assert (await chain.rerank("q", DOCS)).backend == "api", "a fixed key closes it on the probe"
    assert breaker.state == "closed" and breaker.reason is None


async def test_a_vendor_bad_request_does_not_count_against_the_breaker() -> None:
    breaker = CircuitBreaker(BreakerConfig(failures=1, reset_s=30), clock=FakeClock())
    picky = ScriptedBackend("api", [BackendBadRequest("api answered 400")] * 3)
    chain = FallbackChain(
        [member(picky, breaker, retries=0), member(ScriptedBackend("local"))], sleep=no_sleep
    )
    for _ in range(3):
        assert (await chain.rerank("q", DOCS)).backend == "local"
    assert breaker.state == "closed" and picky.calls == 3


async def test_the_callers_bad_input_stops_the_route() -> None:
    class Picky(ScriptedBackend):
        async def answer(self, request: RankRequest) -> Answer:
            self.calls += 1
            raise InvalidRequest("documents[0] is too long", field="documents[0]")

    picky, good = Picky("picky"), ScriptedBackend("good")
    chain = FallbackChain([member(picky, retries=2), member(good)], sleep=no_sleep)
    with pytest.raises(InvalidRequest):
        await chain.rerank("q", DOCS)
    assert picky.calls == 1 and good.calls == 0


async def test_last_resort_keeps_original_order_marked_degraded() -> None:
    down = ScriptedBackend("down", [BackendUnavailable("x")] * 4)
    chain = FallbackChain([member(down, retries=1)], sleep=no_sleep)
    result = await chain.rerank("q", DOCS, top_n=3)
    assert result.degraded and result.fallback and result.backend == LAST_RESORT
    assert [s.index for s in result.results] == [0, 1, 2]
    assert result.skipped[0].backend == "down"


async def test_last_resort_off_raises_naming_what_failed() -> None:
    down = ScriptedBackend("down", [BackendUnavailable("down answered 503", backend="down")] * 2)
    chain = FallbackChain([member(down, retries=1)], last_resort=False, sleep=no_sleep)
    with pytest.raises(AllBackendsFailed) as info:
        await chain.rerank("q", DOCS)
    assert "down" in str(info.value)
    assert info.value.skipped[0]["backend"] == "down"


async def test_breaker_opens_skips_then_probes_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=2, reset_s=30), clock=clock)
    failing = ScriptedBackend("api", [BackendUnavailable("x")] * 2)
    good = ScriptedBackend("local")
    chain = FallbackChain([member(failing, breaker, retries=0), member(good)], sleep=no_sleep)

    for _ in range(2):
        assert (await chain.rerank("q", DOCS)).backend == "local"
    assert breaker.state == "open" and failing.calls == 2

    skipped = await chain.rerank("q", DOCS)
    assert failing.calls == 2, "an open breaker lets no call through"
    assert skipped.skipped[0].reason == "circuit breaker open"

    clock.now += 31
    assert breaker.state == "half_open"
    probe = await chain.rerank("q", DOCS)  # the script is spent: the probe succeeds
    assert probe.backend == "api" and not probe.fallback
    assert breaker.state == "closed" and failing.calls == 3


async def test_failed_probe_reopens_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=1, reset_s=5), clock=clock)
    failing = ScriptedBackend("api", [BackendUnavailable("x")] * 5)
    chain = FallbackChain([member(failing, breaker, retries=0)], sleep=no_sleep)
    await chain.rerank("q", DOCS)
    assert breaker.state == "open"
    clock.now += 6
    assert breaker.allow() is True and breaker.allow() is False, "one probe at a time"
    breaker.record_failure("backend_unavailable: x")
    assert breaker.state == "open"


async def test_backoff_grows_between_retries() -> None:
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    flaky = ScriptedBackend("flaky", [BackendUnavailable("x")] * 3)
    chain = FallbackChain([member(flaky, retries=3, backoff_s=0.1)], sleep=record)
    result = await chain.rerank("q", DOCS)
    assert result.backend == "flaky" and slept == [0.1, 0.2, 0.4]


async def test_every_backend_overloaded_is_a_rate_limit_not_a_degraded_answer() -> None:
    busy = [ScriptedBackend(n, [BackendRateLimited(f"{n} is overloaded", backend=n)]) for n in "ab"]
    chain = FallbackChain([member(b, retries=0) for b in busy], sleep=no_sleep)
    with pytest.raises(BackendRateLimited, match="b is overloaded"):
        await chain.rerank("q", DOCS)


async def test_an_overloaded_backend_is_routed_around_without_opening_its_breaker() -> None:
    breaker = CircuitBreaker(BreakerConfig(failures=1, reset_s=30), clock=FakeClock())
    busy = ScriptedBackend("busy", [BackendRateLimited("full", backend="busy")] * 3)
    chain = FallbackChain(
        [member(busy, breaker, retries=0), member(ScriptedBackend("good"))], sleep=no_sleep
    )
    for _ in range(3):
        result = await chain.rerank("q", DOCS)
        assert result.backend == "good" and result.fallback and not result.degraded
    assert breaker.state == "closed" and busy.calls == 3


async def test_a_failure_besides_an_overload_still_gets_the_last_resort() -> None:
    busy = ScriptedBackend("busy", [BackendRateLimited("full", backend="busy")])
    down = ScriptedBackend("down", [BackendUnavailable("503", backend="down")])
    chain = FallbackChain([member(busy, retries=0), member(down, retries=0)], sleep=no_sleep)
    result = await chain.rerank("q", DOCS)
    assert result.degraded and result.backend == LAST_RESORT
