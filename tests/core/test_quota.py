"""Tenants' quotas: the token bucket's decisions, in process and in Redis (a real redis-server,
started by pid), the share a replica counts alone while Redis does not answer, and the config a
tenant is refused at load for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rerank_core.config import ConfigError, QuotaStoreConfig, TenantConfig, key_digest, load_config
from rerank_core.quota import LocalBuckets, Quotas, policies


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    pols = policies(TenantConfig(requests_per_minute=60), burst_s=2)
    admitted = [buckets.take("t", pols, {"requests": 1, "pairs": 1}).admitted for _ in range(3)]
    assert admitted == [True, True, False]
    refused = buckets.take("t", pols, {"requests": 1, "pairs": 1})
    assert refused.wait_s == pytest.approx(1.0)
    clock.t += 1.0
    assert buckets.take("t", pols, {"requests": 1, "pairs": 1}).admitted


def test_a_request_larger_than_the_bucket_leaves_it_in_debt() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    # 600 pairs a minute: 10 a second, a bucket of 20.
    pols = policies(TenantConfig(pairs_per_minute=600), burst_s=2)
    big = buckets.take("t", pols, {"requests": 1, "pairs": 100})
    assert big.admitted and big.tokens["pairs"] == pytest.approx(-80)
    after = buckets.take("t", pols, {"requests": 1, "pairs": 1})
    # 81 pairs to pay back before one fits: 8.1 s.
    assert not after.admitted and after.wait_s == pytest.approx(8.1)


def test_over_a_minute_a_key_gets_its_quota_and_at_most_its_burst_more() -> None:
    clock = Clock()
    quotas = Quotas(
        {"t": TenantConfig(requests_per_minute=600)}, QuotaStoreConfig(burst_s=2), clock=clock
    )

    async def minute() -> int:
        admitted = 0
        for _ in range(6000):  # a client sending 100 a second, resending at once
            clock.t += 0.01
            if quotas.blocked_s("t") > 0:
                continue
            admitted += (await quotas.take("t", 1)).admitted
        return admitted

    admitted = asyncio.run(minute())
    assert 600 <= admitted <= 600 + 20


def test_a_replica_counting_alone_holds_its_share() -> None:
    quotas = Quotas(
        {"t": TenantConfig(requests_per_minute=60)},
        QuotaStoreConfig(burst_s=4, redis_url=None, redis_url_env=None),
        replicas=2,
        clock=Clock(),
    )

    async def burst() -> list[bool]:
        return [(await quotas.take("t", 1)).admitted for _ in range(5)]

    # Its share: 30 a minute, a bucket of 2 (not the whole quota's 4).
    assert asyncio.run(burst()) == [True, True, False, False, False]


def test_redis_counts_as_the_process_does_and_the_share_takes_over_when_it_stops(
    redis_server: Path, tmp_path: Path
) -> None:
    from rerank_tools.cluster import RedisServer

    server = RedisServer()
    cfg = {"t": TenantConfig(requests_per_minute=6, pairs_per_minute=60)}
    store = QuotaStoreConfig(
        redis_url=f"redis://127.0.0.1:{server.port}/0", redis_url_env=None, burst_s=20, retry_s=0.2
    )
    # Two replicas: each counts half of each quota alone.
    a, b = Quotas(cfg, store, replicas=2), Quotas(cfg, store, replicas=2)

    async def run() -> None:
        server.start(tmp_path / "redis.log")
        try:
            # Shared: the bucket holds 2 requests, whichever replica takes them.
            got = [await q.take("t", 1) for q in (a, b, a, b)]
            assert [d.admitted for d in got] == [True, True, False, False]
            assert all(d.shared for d in got)
            assert got[2].wait_s == pytest.approx(10, abs=0.5)
            assert a.rate_limit_header("t", got[1]).startswith('"requests";r=0;')
            assert server.keys("quota:t:requests") == ["rerank:quota:t:requests"]
        finally:
            server.stop()
        # Redis gone: each replica its share (a bucket of 1 request), never all refused.
        alone = [await q.take("t", 1) for q in (a, b, a, b)]
        assert [d.admitted for d in alone] == [True, True, False, False]
        assert not any(d.shared for d in alone)
        assert a.counted_alone >= 1 and b.counted_alone >= 1
        # Back: after retry_s the shared counters again (a fresh Redis: a full bucket).
        server.start(tmp_path / "redis.log")
        try:
            await asyncio.sleep(0.3)
            back = [await q.take("t", 1) for q in (a, b, a)]
            assert [d.admitted for d in back] == [True, True, False]
            assert all(d.shared for d in back)
        finally:
            await a.close()
            await b.close()
            server.stop()

    asyncio.run(run())


def test_a_redis_that_hangs_costs_a_request_its_timeout_only() -> None:
    import socket
    import time

    # A listening socket that never answers stands for a Redis that hangs.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    store = QuotaStoreConfig(
        redis_url=f"redis://127.0.0.1:{port}/0", redis_url_env=None, timeout_s=0.05, retry_s=5
    )
    quotas = Quotas({"t": TenantConfig(requests_per_minute=60)}, store)

    async def run() -> tuple[float, float]:
        start = time.perf_counter()
        first = await quotas.take("t", 1)
        mid = time.perf_counter()
        second = await quotas.take("t", 1)
        end = time.perf_counter()
        assert first.admitted and second.admitted and not first.shared
        return mid - start, end - mid

    try:
        first_s, second_s = asyncio.run(run())
    finally:
        silent.close()
    # The first waits the timeout (and a bit); the next does not ask Redis before retry_s.
    assert first_s < 1.0 and second_s < 0.01


BASE = {"backends": {"a": {"type": "cohere", "model": "x"}}, "auth": {"enabled": True}}


@pytest.mark.parametrize(
    ("tenants", "named"),
    [
        ({"x": {"routes": ["nope"]}}, "tenants.x.routes: unknown route or backend 'nope'"),
        ({"x": {"requests_per_minute": -1}}, "tenants.x.requests_per_minute"),
        ({"x": {"pairs_per_minute": 0}}, "tenants.x.pairs_per_minute"),
        ({"x": {"max_in_flight": 0}}, "tenants.x.max_in_flight"),
        ({"x": {"traffic_class": "urgent"}}, "tenants.x.traffic_class"),
        ({"x": {"key_sha256": ["not-a-digest"]}}, "tenants.x.key_sha256"),
        (
            {"x": {"key_sha256": [key_digest("k")]}, "y": {"key_sha256": [key_digest("k")]}},
            "tenants.y.key_sha256: a key of tenant 'x' too",
        ),
    ],
)
def test_bad_tenant_config_is_refused_at_load_naming_the_field(
    tenants: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(".", r"\.")):
        load_config({**BASE, "tenants": tenants})


def test_tenants_need_auth() -> None:
    with pytest.raises(ConfigError, match=r"set auth\.enabled: true"):
        load_config({"backends": BASE["backends"], "tenants": {"x": {}}})
