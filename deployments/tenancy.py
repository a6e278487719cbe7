"""Tenants in the Router: who a request's key belongs to, what its tenant may use, and the checks
made before any hop to a model (quotas, the cap of requests in flight, the routes it may name).

A presented key is looked up by its SHA-256 digest (``rerank_core.config.key_digest``); the raw key
is dropped at once and never reaches a log line, a metric or an error: tenants are known by their
names. ``deployments.middleware.TenantMiddleware`` refuses a tenant's requests without reading
their bodies while its quota is used up or its cap of requests in flight is reached (a client
resending at once after each refusal costs the Router a header lookup); the handler then counts
the request's pairs once its body is parsed (``Tenancy.admit``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from rerank_core.config import DEFAULT_TENANT, ServiceConfig, TenantConfig, TrafficClass, key_digest
from rerank_core.errors import (
    ConcurrencyLimited,
    InvalidRequest,
    QuotaExceeded,
    RerankError,
    RouteForbidden,
)
from rerank_core.quota import Decision, Quotas

#: The paths whose requests count against a tenant's quotas.
RERANK_PATHS = frozenset({"/rerank", "/v1/rerank", "/v2/rerank"})
#: The header a request asks for a traffic class with (never above its tenant's).
CLASS_HEADER = "x-rerank-class"


class RefusalCounter(Protocol):
    """Where refusals and admitted pairs are counted (the Router's metrics)."""

    def refused(self, tenant: str, reason: str) -> None: ...

    def admitted(self, tenant: str, pairs: int) -> None: ...


@dataclass
class Tenant:
    """A tenant as one Router replica serves it: its configuration, its requests in flight here and
    what it was answered."""

    name: str
    config: TenantConfig
    #: Requests this replica may have in flight for the tenant (its share of ``max_in_flight``).
    cap: int | None
    in_flight: int = 0
    requests: int = 0
    pairs: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def traffic_class(self) -> TrafficClass:
        return self.config.traffic_class

    def lane(self, asked: str | None) -> TrafficClass:
        """The class a request is served in: its tenant's, or bulk when the request asks for
        bulk. Asking for more than the tenant's class gets the tenant's; asking for a class that
        does not exist is the caller's error."""
        if asked is None:
            return self.traffic_class
        wanted = asked.strip().lower()
        if wanted not in ("interactive", "bulk"):
            raise InvalidRequest(
                f"X-Rerank-Class: {asked!r} is not a traffic class (interactive or bulk)",
                field="X-Rerank-Class",
            )
        return "bulk" if wanted == "bulk" else self.traffic_class

    @property
    def at_cap(self) -> bool:
        """Whether this replica has the tenant's share of requests in flight already."""
        return self.cap is not None and self.in_flight >= self.cap

    def may_use(self, route: str) -> bool:
        return self.config.routes is None or route in self.config.routes

    def stats(self) -> dict[str, Any]:
        return {
            "class": self.traffic_class,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "pairs": self.pairs,
            "refused": dict(self.refused),
        }


class Tenancy:
    """Every tenant of the service as this Router replica knows it, and its quota counters."""

    def __init__(
        self,
        service: ServiceConfig,
        default_keys: list[bytes],
        replicas: int,
        metrics: RefusalCounter,
        app: str = "rerank",
    ) -> None:
        self.enabled = service.auth.enabled
        self.metrics = metrics
        configs = dict(service.tenants)
        configs.setdefault(DEFAULT_TENANT, TenantConfig())
        self.tenants = {
            name: Tenant(
                name,
                cfg,
                None if cfg.max_in_flight is None else math.ceil(cfg.max_in_flight / replicas),
            )
            for name, cfg in configs.items()
        }
        #: Key digest -> tenant name.
        self.by_digest: dict[str, str] = {}
        owned = [(DEFAULT_TENANT, key_digest(k)) for k in default_keys]
        for name, cfg in service.tenants.items():
            owned += [(name, d) for d in cfg.load_key_digests()]
        for name, digest in owned:
            other = self.by_digest.setdefault(digest, name)
            if other != name:
                raise RerankError(
                    f"a key of tenant {name!r} is also a key of tenant {other!r} "
                    "(each key belongs to one tenant)"
                )
        if self.enabled and not self.by_digest:
            auth = service.auth
            raise RerankError(
                f"auth is enabled but no key is set in {auth.api_keys_env}"
                + (f" or {auth.api_keys_file}" if auth.api_keys_file else "")
                + " nor for any tenant"
            )
        self.quotas = Quotas(configs, service.quota_store, replicas, prefix=app)

    def identify(self, authorization: str) -> Tenant | None:
        """The tenant an ``Authorization`` header's bearer key belongs to (None: no valid key);
        with auth off, ``default``."""
        if not self.enabled:
            return self.tenants[DEFAULT_TENANT]
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        name = self.by_digest.get(key_digest(token.strip()))
        return None if name is None else self.tenants[name]

    def early_refusal(self, tenant: Tenant) -> QuotaExceeded | None:
        """The refusal a request of ``tenant`` gets before its body is read, if any: its quota
        is used up for a while yet, or its cap of requests in flight is reached."""
        if tenant.at_cap:
            return self._refuse(tenant, "in_flight")
        if self.quotas.limited(tenant.name):
            wait = self.quotas.blocked_s(tenant.name)
            if wait > 0:
                return self._quota_refusal(tenant, wait, None)
        return None

    def check_route(self, tenant: Tenant, route: str) -> None:
        if not tenant.may_use(route):
            self._count(tenant, "route")
            raise RouteForbidden(f"this key's tenant may not use {route!r}", field="model")

    @contextmanager
    def admitted(self, tenant: Tenant) -> Iterator[None]:
        """Hold one of ``tenant``'s requests in flight, or refuse it at its cap."""
        if tenant.at_cap:
            raise self._refuse(tenant, "in_flight")
        tenant.in_flight += 1
        try:
            yield
        finally:
            tenant.in_flight -= 1

    async def admit(self, tenant: Tenant, pairs: int, headers: dict[str, str]) -> None:
        """Count a request of ``pairs`` pairs against ``tenant``'s quotas; its ``RateLimit``
        headers go into ``headers``. Raises ``QuotaExceeded`` when a quota has no room for it."""
        tenant.requests += 1
        if self.quotas.limited(tenant.name):
            decision = await self.quotas.take(tenant.name, pairs)
            headers.update(self.rate_limit_headers(tenant, decision))
            if not decision.admitted:
                raise self._quota_refusal(tenant, decision.wait_s, decision)
        tenant.pairs += pairs
        self.metrics.admitted(tenant.name, pairs)

    def rate_limit_headers(self, tenant: Tenant, decision: Decision | None) -> dict[str, str]:
        """A limited tenant's ``RateLimit-Policy`` and ``RateLimit`` (as ``decision`` left its
        quotas, else as the last decision did); none for an unlimited tenant."""
        if not self.quotas.limited(tenant.name):
            return {}
        headers = {"RateLimit-Policy": self.quotas.policy_header(tenant.name)}
        decision = decision or self.quotas.last.get(tenant.name)
        if decision is not None:
            headers["RateLimit"] = self.quotas.rate_limit_header(tenant.name, decision)
        return headers

    def _quota_refusal(self, tenant: Tenant, wait_s: float, decision: Decision | None) -> QuotaExceeded:
        decision = decision or self.quotas.last.get(tenant.name)
        tokens = decision.tokens if decision is not None else {}
        spent = [k for k in ("requests", "pairs") if k in tokens and tokens[k] < 1] or ["requests"]
        reason = "pairs_quota" if spent == ["pairs"] else "requests_quota"
        self._count(tenant, reason)
        what = "pairs" if reason == "pairs_quota" else "requests"
        headers = self.rate_limit_headers(tenant, decision)
        return QuotaExceeded(
            f"this key's tenant has used its {what} a minute; retry after {math.ceil(wait_s)}s",
            retry_after_s=max(1.0, math.ceil(wait_s)),
            headers=headers,
        )

    def _count(self, tenant: Tenant, reason: str) -> None:
        tenant.refused[reason] += 1
        self.metrics.refused(tenant.name, reason)

    def _refuse(self, tenant: Tenant, reason: str) -> ConcurrencyLimited:
        self._count(tenant, reason)
        return ConcurrencyLimited(
            f"this key's tenant has {tenant.in_flight} requests in flight, its cap "
            f"(max_in_flight {tenant.config.max_in_flight} over all router replicas)",
            retry_after_s=1.0,
        )

    def stats(self, viewer: Tenant | None) -> dict[str, Any]:
        """Per tenant, this replica's figures: every tenant for the ``default`` tenant's keys (the
        operators'), else the viewer's own."""
        shown = self.tenants if viewer is None or viewer.name == DEFAULT_TENANT else {viewer.name: viewer}
        return {name: t.stats() for name, t in shown.items()}
