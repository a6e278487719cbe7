"""What counting a tenant's quota adds to one request: ``Quotas.take`` timed in process (one replica
counting alone) and through a real ``redis-server`` on loopback (the Router's replicas sharing their
counters), one call after another on one event loop, as the Router makes them.

    python -m rerank_tools.quota_cost [--calls 5000]

Starts ``redis-server`` on a free port (stopped by its pid) and prints one JSON line per store:
microseconds per call, p50, p99 and mean. Needs ``redis-server`` (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from rerank_core.config import QuotaStoreConfig, TenantConfig
from rerank_core.quota import Quotas
from rerank_tools.cluster import RedisServer

#: A quota no call reaches: every call is counted and admitted, none refused early.
UNREACHED = TenantConfig(requests_per_minute=1e9, pairs_per_minute=1e12)


async def timed_calls(quotas: Quotas, calls: int) -> list[float]:
    """Microseconds of each of ``calls`` takes of a 100-pair request (after 100 unmeasured)."""
    for _ in range(100):
        await quotas.take("t", 100)
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        decision = await quotas.take("t", 100)
        out.append((time.perf_counter() - start) * 1e6)
        assert decision.admitted
    await quotas.close()
    return out


def summary(store: str, micros: list[float], shared: bool) -> dict[str, object]:
    ordered = sorted(micros)
    return {
        "store": store,
        "shared": shared,
        "calls": len(micros),
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 1),
        "mean_us": round(statistics.fmean(micros), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)
    alone = Quotas({"t": UNREACHED}, QuotaStoreConfig(redis_url=None, redis_url_env=None))
    print(json.dumps(summary("in process", asyncio.run(timed_calls(alone, args.calls)), False)))
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        server.start(Path(tmp) / "redis.log")
        store = QuotaStoreConfig(
            redis_url=f"redis://127.0.0.1:{server.port}/0", redis_url_env=None, timeout_s=1.0
        )
        shared = Quotas({"t": UNREACHED}, store)
        micros = asyncio.run(timed_calls(shared, args.calls))
        if shared.counted_alone:
            raise SystemExit(f"redis did not answer {shared.counted_alone} calls")
        print(json.dumps(summary("redis on loopback", micros, True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
