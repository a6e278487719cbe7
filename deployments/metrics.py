"""The router's Prometheus metrics (exported by Ray's metrics agent)."""

from __future__ import annotations

from ray.serve import metrics

#: Seconds; the latency histogram's buckets. They reach past the default request deadline
#: (``limits.request_timeout_s``, 60 s) so that answers near or at the deadline are told apart.
LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]


class RouterMetrics:
    """Requests by route, answering backend, status and tenant; pairs and refusals by tenant;
    fallbacks; latency by route and traffic class. Tenants are known by name, never by key."""

    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "rerank_requests",
            description="Rerank requests by route, answering backend, status and tenant.",
            tag_keys=("route", "backend", "status", "tenant"),
        )
        self.pairs = metrics.Counter(
            "rerank_tenant_pairs",
            description="Pairs (documents) of the requests admitted, by tenant.",
            tag_keys=("tenant",),
        )
        self.refusals = metrics.Counter(
            "rerank_tenant_refusals",
            description="Requests refused for a tenant's own limits, by tenant and reason "
            "(requests_quota, pairs_quota, in_flight, route).",
            tag_keys=("tenant", "reason"),
        )
        self.fallbacks = metrics.Counter(
            "rerank_fallbacks",
            description="Requests answered by a backend other than the route's first.",
            tag_keys=("route", "backend"),
        )
        self.latency = metrics.Histogram(
            "rerank_request_latency_s",
            description="Seconds from request to answer inside the router.",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("route", "traffic_class"),
        )

    def fallback(self, route: str, backend: str) -> None:
        self.fallbacks.inc(tags={"route": route, "backend": backend})

    def admitted(self, tenant: str, pairs: int) -> None:
        self.pairs.inc(pairs, tags={"tenant": tenant})

    def refused(self, tenant: str, reason: str) -> None:
        self.refusals.inc(tags={"tenant": tenant, "reason": reason})

    def finished(
        self,
        route: str,
        backend: str,
        status: str,
        seconds: float,
        tenant: str,
        traffic_class: str,
    ) -> None:
        self.requests.inc(
            tags={"route": route, "backend": backend, "status": status, "tenant": tenant}
        )
        self.latency.observe(seconds, tags={"route": route, "traffic_class": traffic_class})
