"""Tenants' quotas: a token bucket per tenant and quota (requests a minute, pairs a minute), counted
in Redis when the Router's replicas share one, else (and whenever Redis does not answer) by each
replica alone against its share.

A bucket holds ``burst_s`` of its quota at most and refills continuously. A request is admitted
when every bucket of its tenant holds its cost, or is full (a request larger than the bucket leaves
it in debt, so the quota holds over time whatever the request sizes); then each bucket gives up the
cost. In Redis one Lua script reads, refills, decides and writes every bucket of the request at
once, on Redis's clock, so replicas never race and never disagree on time.

A refusal says how long until the request fits (``Decision.wait_s``); after any decision that leaves
a bucket without room for even the smallest request, the replica remembers until when, and refuses
that tenant's requests until then without counting (``Quotas.blocked_s``): a client that resends at
once after each refusal costs no round trip to Redis, and its refusals need no request body.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rerank_core.config.tenants import QuotaStoreConfig, TenantConfig

log = logging.getLogger(__name__)

#: The quotas a tenant may have, by the name the ``RateLimit`` headers give them.
KINDS = ("requests", "pairs")

#: Seconds Redis keeps an idle bucket: long after any bucket has refilled.
IDLE_TTL_MS = 600_000

#: Reads, refills and (when every bucket has room) takes the buckets ``KEYS`` on Redis's clock.
#: ARGV: rate per second, capacity and cost of each bucket in turn. Answers: admitted (1 or 0),
#: the wait until the request fits, then each bucket's tokens after the decision, as strings
#: (Redis would truncate Lua numbers to integers).
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = {}
local wait = 0
for i = 1, #KEYS do
  local rate, cap, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tok, at = tonumber(v[1]), tonumber(v[2])
  if tok == nil or at == nil then tok, at = cap, now end
  tok = math.min(cap, tok + math.max(0, now - at) * rate)
  tokens[i] = tok
  local need = math.min(cost, cap)
  if tok < need then wait = math.max(wait, (need - tok) / rate) end
end
local admitted = 0
if wait == 0 then
  admitted = 1
  for i = 1, #KEYS do tokens[i] = tokens[i] - tonumber(ARGV[3*i]) end
end
local out = {admitted, tostring(wait)}
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[#ARGV]))
  out[#out + 1] = tostring(tokens[i])
end
return out
"""


@dataclass(frozen=True)
class Policy:
    """One quota of a tenant: ``per_minute`` units, refilled at ``rate`` a second into a bucket of
    ``capacity``."""

    kind: str
    per_minute: float
    burst_s: float

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0

    @property
    def capacity(self) -> float:
        # At least one unit: a bucket smaller than the smallest request would admit nothing.
        return max(1.0, self.rate * self.burst_s)


@dataclass(frozen=True)
class Decision:
    """Whether a request was admitted, how long until it would fit (0 when admitted), and each
    quota's tokens left after the decision; ``shared`` says whether Redis counted it."""

    admitted: bool
    wait_s: float
    tokens: dict[str, float]
    shared: bool


def policies(cfg: TenantConfig, burst_s: float, share: int = 1) -> list[Policy]:
    """A tenant's quotas, each ``1/share`` of the configured one (a replica counting alone)."""
    out = []
    for kind, per_minute in (
        ("requests", cfg.requests_per_minute),
        ("pairs", cfg.pairs_per_minute),
    ):
        if per_minute is not None:
            out.append(Policy(kind, per_minute / share, burst_s))
    return out


@dataclass
class _Bucket:
    policy: Policy
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.policy.capacity, self.tokens + max(0.0, now - self.at) * self.policy.rate)
        self.at = now


@dataclass
class LocalBuckets:
    """The buckets one replica counts alone: the same decision as ``TAKE_SCRIPT``, in process."""

    clock: Callable[[], float] = time.monotonic
    buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def take(self, tenant: str, pols: list[Policy], costs: dict[str, int]) -> Decision:
        now = self.clock()
        found = []
        for p in pols:
            b = self.buckets.get((tenant, p.kind))
            if b is None or b.policy != p:
                b = self.buckets[(tenant, p.kind)] = _Bucket(p, p.capacity, now)
            b.refill(now)
            found.append(b)
        wait = 0.0
        for b in found:
            need = min(costs[b.policy.kind], b.policy.capacity)
            if b.tokens < need:
                wait = max(wait, (need - b.tokens) / b.policy.rate)
        if wait == 0.0:
            for b in found:
                b.tokens -= costs[b.policy.kind]
        return Decision(wait == 0.0, wait, {b.policy.kind: b.tokens for b in found}, shared=False)


class Quotas:
    """The quota counters of one Router replica: in Redis when ``store`` names one and it
    answers, else its own ``LocalBuckets`` at ``1/replicas`` of each quota.

    ``prefix`` keeps the keys of one application apart from another's on a shared Redis.
    """

    def __init__(
        self,
        tenants: dict[str, TenantConfig],
        store: QuotaStoreConfig,
        replicas: int = 1,
        prefix: str = "rerank",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.replicas = max(1, replicas)
        self.prefix = prefix
        self.clock = clock
        self.shared_policies = {t: policies(c, store.burst_s) for t, c in tenants.items()}
        self.alone_policies = {t: policies(c, store.burst_s, self.replicas) for t, c in tenants.items()}
        self.local = LocalBuckets(clock)
        self.url = store.resolved_url()
        self._redis: Any = None
        self._script: Any = None
        #: Redis is not asked before this moment (it failed to answer).
        self._redis_down_until = 0.0
        #: Decisions counted alone because Redis did not answer (the figure ``/v1/stats`` shows).
        self.counted_alone = 0
        #: Per tenant, the last decision (its quotas' state for a refusal made without counting).
        self.last: dict[str, Decision] = {}
        #: Per tenant, until when no request of it can be admitted (``blocked_s``).
        self._blocked_until: dict[str, float] = {}

    def limited(self, tenant: str) -> bool:
        """Whether ``tenant`` has any quota counted here."""
        return bool(self.shared_policies.get(tenant))

    def policy_header(self, tenant: str) -> str:
        """The tenant's ``RateLimit-Policy`` header value (each quota over a 60 s window)."""
        return ", ".join(f'"{p.kind}";q={_whole(p.per_minute)};w=60' for p in self.shared_policies[tenant])

    def blocked_s(self, tenant: str) -> float:
        """Seconds during which no request of ``tenant`` can be admitted, as the last decision
        left its buckets (0: it may be)."""
        until = self._blocked_until.get(tenant)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked_until[tenant]
            return 0.0
        return left

    async def take(self, tenant: str, pairs: int) -> Decision:
        """Count one request of ``pairs`` pairs against ``tenant``'s quotas."""
        costs = {"requests": 1, "pairs": pairs}
        decision: Decision | None = None
        if self.url is not None and self.clock() >= self._redis_down_until:
            decision = await self._take_shared(tenant, costs)
        if decision is None:
            decision = self.local.take(tenant, self.alone_policies[tenant], costs)
        self._remember_block(tenant, decision)
        self.last[tenant] = decision
        return decision

    def rate_limit_header(self, tenant: str, decision: Decision) -> str:
        """The ``RateLimit`` header value: each quota's whole units left now and the seconds until
        its bucket is full again, on the shared quota's scale."""
        pols = self.shared_policies[tenant] if decision.shared else self.alone_policies[tenant]
        parts = []
        for p in pols:
            tokens = decision.tokens[p.kind]
            full_in = (p.capacity - tokens) / p.rate
            scale = 1 if decision.shared else self.replicas
            parts.append(f'"{p.kind}";r={max(0, math.floor(tokens * scale))};t={max(0, math.ceil(full_in))}')
        return ", ".join(parts)

    def _remember_block(self, tenant: str, decision: Decision) -> None:
        pols = self.shared_policies[tenant] if decision.shared else self.alone_policies[tenant]
        blocked = 0.0
        for p in pols:
            tokens = decision.tokens[p.kind]
            if tokens < 1:
                blocked = max(blocked, (1 - tokens) / p.rate)
        if blocked > 0:
            self._blocked_until[tenant] = self.clock() + blocked
        else:
            self._blocked_until.pop(tenant, None)

    async def _take_shared(self, tenant: str, costs: dict[str, int]) -> Decision | None:
        pols = self.shared_policies[tenant]
        keys = [f"{self.prefix}:quota:{tenant}:{p.kind}" for p in pols]
        args: list[float] = []
        for p in pols:
            args += [p.rate, p.capacity, costs[p.kind]]
        try:
            if self._redis is None:
                import redis.asyncio as aioredis

                self._redis = aioredis.Redis.from_url(
                    self.url,
                    socket_timeout=self.store.timeout_s,
                    socket_connect_timeout=self.store.timeout_s,
                )
                self._script = self._redis.register_script(TAKE_SCRIPT)
            out = await asyncio.wait_for(
                self._script(keys=keys, args=[*args, IDLE_TTL_MS]), timeout=self.store.timeout_s
            )
        except (OSError, TimeoutError, asyncio.TimeoutError, _redis_errors()) as exc:
            if self.clock() >= self._redis_down_until:
                log.warning(
                    "quota store did not answer (%s): each replica counts its share for %gs",
                    type(exc).__name__,
                    self.store.retry_s,
                )
            self._redis_down_until = self.clock() + self.store.retry_s
            self.counted_alone += 1
            return None
        admitted, wait, *tokens = out
        return Decision(
            bool(int(admitted)),
            float(wait),
            {p.kind: float(t) for p, t in zip(pols, tokens, strict=True)},
            shared=True,
        )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _redis_errors() -> type[Exception]:
    """redis-py's base error (its connection and time-out errors derive from it)."""
    import redis.exceptions

    return redis.exceptions.RedisError


def _whole(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
