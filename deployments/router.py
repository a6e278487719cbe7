"""The Router deployment: the FastAPI ingress that parses, authenticates, picks the route's
fallback chain and answers in one shape.

The Router class is defined here at module level; the configuration and the model deployments'
handles come in through ``Router.bind(service, handles)`` (``deployments.app``). Each replica builds
its own FastAPI app from its configuration (``build_api``, called by Serve through
``__serve_build_asgi_app__`` once the replica is constructed): its settings live on that app's
``state``, its routes are the replica's bound methods.
Errors become HTTP answers in ``deployments.http_errors``, the body limit and request ids live in
``deployments.middleware``, the key check in ``deployments.auth``, metrics in
``deployments.metrics``. (No ``from __future__ import annotations`` here: FastAPI reads the
handlers' annotations as types.)
"""


import asyncio
import logging
import time
from collections.abc import MutableMapping
from typing import Any

import ray
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.auth import require_json, require_key
from deployments.handles import UNREACHABLE, DeploymentBackend
from deployments.http_errors import install_error_handlers, request_id
from deployments.metrics import RouterMetrics
from deployments.middleware import BodyLimitMiddleware, RequestIdMiddleware, TenantMiddleware
from deployments.stats import config_digest, merge_replica_stats, open_board
from deployments.tenancy import CLASS_HEADER, Tenancy, Tenant
from deployments.timing import timing_headers
from rerank_core.admission import model_queues
from rerank_core.backends import Backend, DisabledBackend, build_enabled_backend
from rerank_core.config import LOCAL_TYPES, load_config
from rerank_core.errors import BackendTimeout, RerankError
from rerank_core.fallback import CircuitBreaker, FallbackChain, build_chain
from rerank_core.types import RankedResult, RankRequest
from rerank_wire import (
    CohereResponse,
    CohereV1Request,
    CohereV2Request,
    RerankQuery,
    RerankRequest,
    RerankResponse,
    check_limits,
    from_cohere_request,
    from_service_request,
)

log = logging.getLogger("ray.serve")

AUTH = [Depends(require_key)]
JSON_BODY = [Depends(require_key), Depends(require_json)]


def json_response(body: BaseModel, headers: dict[str, str]) -> Response:
    """``body`` as JSON, serialised once by pydantic (the model validated it when it was built, so
    FastAPI's ``response_model`` is left to the OpenAPI schema)."""
    return Response(
        body.model_dump_json(exclude_none=True), media_type="application/json", headers=headers
    )


@serve.deployment(name="Router")
@serve.ingress()
class Router:
    """Holds a fallback chain per route over handles to model deployments and API backends."""

    def __init__(self, service: dict[str, Any], model_handles: dict[str, DeploymentHandle]) -> None:
        self.service = load_config(service)
        router = self.service.router
        # Keys are read here, in the replica, so they never travel inside the pickled app.
        auth = self.service.auth
        keys = [k.get_secret_value().encode() for k in auth.load_keys()] if auth.enabled else []
        app_name = serve.get_replica_context().app_name
        self.metrics = RouterMetrics()
        #: Who each key belongs to, the tenants' quotas and their figures in this replica.
        self.tenancy = Tenancy(self.service, keys, router.num_replicas, self.metrics, app=app_name)
        self.backends: dict[str, Backend] = {}
        #: This replica's view of each local model's queue: admission and attempt deadlines.
        self.queues = model_queues(self.service)
        for name, cfg in self.service.backends.items():
            if cfg.type in LOCAL_TYPES:
                self.backends[name] = DeploymentBackend(name, model_handles[name], self.queues[name])
                continue
            self.backends[name] = build_enabled_backend(name, cfg)
            if isinstance(self.backends[name], DisabledBackend):
                log.warning("backend %s disabled: %s is not set", name, cfg.api_key_env)
        self.breakers = {name: CircuitBreaker(self.service.breaker) for name in self.backends}
        self.chains: dict[str, FallbackChain] = {}
        #: Requests being answered now; a disconnected client's request leaves this at once.
        self.in_flight = 0
        self.stats_board = open_board()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """This replica's HTTP app (Serve calls it once the replica is constructed)."""
        return build_api(self)

    def chain_for(self, model: str | None) -> tuple[str, FallbackChain]:
        route_name, route = self.service.resolve_route(model)
        chain = self.chains.get(route_name)
        if chain is None:
            chain = build_chain(route, self.backends, self.breakers, self.queues)
            self.chains[route_name] = chain
        return route_name, chain

    async def run(
        self, q: RerankQuery, headers: MutableMapping[str, str], request: Request
    ) -> tuple[str, RankedResult, float]:
        """Answer ``q`` for the request's tenant, through its route's chain within the request
        deadline; where its time went, its traffic class and its tenant's quota go into
        ``headers``."""
        start = time.perf_counter()
        limits = self.service.limits
        check_limits(q, limits)
        route_name, chain = self.chain_for(q.model)
        tenant: Tenant = request.state.tenant
        lane = tenant.traffic_class
        status = "ok"
        backend = "-"
        self.in_flight += 1
        try:
            lane = tenant.lane(request.headers.get(CLASS_HEADER))
            headers["X-Rerank-Class"] = lane
            self.tenancy.check_route(tenant, route_name)
            with self.tenancy.admitted(tenant):
                await self.tenancy.admit(tenant, len(q.texts), headers)
                result = await asyncio.wait_for(
                    chain.run(RankRequest(q.query, q.texts, q.top_n, q.long_documents, lane=lane)),
                    timeout=limits.request_timeout_s,
                )
            backend = result.backend
            if result.fallback:
                self.metrics.fallback(route_name, backend)
            # Serve's log lines carry the request id: one line says who answered and who failed.
            log.info(
                "route %s answered by %s for tenant %s%s",
                route_name,
                backend,
                tenant.name,
                "".join(f"; skipped {s.backend} ({s.reason})" for s in result.skipped),
            )
            latency = time.perf_counter() - start
            headers.update(timing_headers(latency, result.timing))
            return route_name, result, latency
        except TimeoutError:
            status = "deadline"
            timeout = BackendTimeout(
                f"the request did not finish within {limits.request_timeout_s:g}s"
            )
            timeout.headers = self.tenancy.rate_limit_headers(tenant, None)
            raise timeout from None
        except RerankError as exc:
            status = exc.code
            # Every answer to a limited tenant carries its quota, refusals included.
            exc.headers = {**self.tenancy.rate_limit_headers(tenant, None), **exc.headers}
            raise
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            self.in_flight -= 1
            self.metrics.finished(
                route_name, backend, status, time.perf_counter() - start, tenant.name, lane
            )

    async def rerank(self, body: RerankRequest, request: Request) -> Response:
        """Rerank documents; the service's own request and answer."""
        q = from_service_request(body)
        headers: dict[str, str] = {}
        route_name, result, latency = await self.run(q, headers, request)
        answer = RerankResponse.model_validate(
            {
                "id": request_id(request),
                "model": route_name,
                "backend": result.backend,
                "fallback": result.fallback,
                "degraded": result.degraded,
                "skipped": [{"backend": s.backend, "reason": s.reason} for s in result.skipped],
                "latency": latency,
                "results": [
                    {
                        "index": s.index,
                        "score": s.score,
                        "raw_score": s.raw_score,
                        "document": q.documents[s.index].text if q.return_documents else None,
                        "id": q.documents[s.index].id,
                        "metadata": q.documents[s.index].metadata,
                    }
                    for s in result.results
                ],
            }
        )
        return json_response(answer, headers)

    async def _cohere(self, q: RerankQuery, request: Request, version: str) -> Response:
        headers: dict[str, str] = {}
        route_name, result, _ = await self.run(q, headers, request)
        body = CohereResponse.model_validate(
            {
                "id": request_id(request),
                "results": [
                    {
                        "index": s.index,
                        "relevance_score": s.score,
                        "document": {"text": q.documents[s.index].text}
                        if q.return_documents
                        else None,
                    }
                    for s in result.results
                ],
                "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
                "model": route_name,
                "usage": {"total_tokens": 0},
            }
        )
        headers.update(
            {
                "X-Rerank-Backend": result.backend,
                "X-Rerank-Fallback": str(result.fallback).lower(),
                "X-Rerank-Degraded": str(result.degraded).lower(),
            }
        )
        return json_response(body, headers)

    async def rerank_cohere_v2(self, body: CohereV2Request, request: Request) -> Response:
        """Cohere v2 compatible: point the cohere SDK's ``base_url`` here."""
        return await self._cohere(from_cohere_request(body), request, "2")

    async def rerank_cohere_v1(self, body: CohereV1Request, request: Request) -> Response:
        """Cohere v1 and Jina compatible."""
        return await self._cohere(from_cohere_request(body), request, "1")

    async def models(self) -> dict[str, Any]:
        """Routes and backends this service answers for (the ``model`` field)."""
        data: list[dict[str, Any]] = [
            {"id": name, "object": "model", "type": "route", "backends": route.backends}
            for name, route in self.service.routes.items()
        ]
        data += [
            {
                "id": name,
                "object": "model",
                "type": cfg.type,
                "model": cfg.model,
                "enabled": not isinstance(self.backends[name], DisabledBackend),
            }
            for name, cfg in self.service.backends.items()
        ]
        default = self.service.resolve_route(None)[0]
        return {"object": "list", "default": default, "data": data}

    async def health(self) -> JSONResponse:
        """Per backend: ready, disabled or unavailable, and its breaker's state."""
        states = dict(
            zip(
                self.backends,
                await asyncio.gather(*(self._backend_state(b) for b in self.backends)),
                strict=True,
            )
        )
        # A backend disabled on purpose (no key) does not make the service degraded.
        enabled = [s for s in states.values() if s["state"] != "disabled"]
        ready = [s for s in enabled if s["state"] == "ready"]
        status = "ok" if len(ready) == len(enabled) else "degraded" if ready else "unavailable"
        return JSONResponse(
            {"status": status, "backends": states},
            status_code=200 if ready else 503,
        )

    async def _backend_state(self, name: str) -> dict[str, Any]:
        backend = self.backends[name]
        breaker = self.breakers[name].state
        info: dict[str, Any] = {"type": self.service.backends[name].type, "breaker": breaker}
        if breaker != "closed":
            # Why it opened: a vendor's refusal of the key reads differently from a timeout.
            info["breaker_reason"] = self.breakers[name].reason
        if isinstance(backend, DisabledBackend):
            info["state"] = "disabled"
            info["detail"] = f"{backend.key_env} is not set"
        elif isinstance(backend, DeploymentBackend):
            try:
                info["device"] = await asyncio.wait_for(
                    backend.device(), timeout=self.service.router.health_timeout_s
                )
                info["state"] = "ready" if breaker != "open" else "degraded"
            except (TimeoutError, BackPressureError, *UNREACHABLE, ray.exceptions.RayTaskError) as exc:
                info["state"] = "unavailable"
                info["detail"] = type(exc).__name__
        else:
            info["state"] = "ready" if breaker != "open" else "degraded"
        return info

    async def stats(self, request: Request) -> dict[str, Any]:
        """Requests in flight in this router replica and its figures per tenant (every tenant
        for an operator's key, a tenant's own for its keys), and each local model's batching
        statistics summed over every running replica (each replica's own under ``replicas``)."""
        out: dict[str, Any] = {}
        for name, backend in self.backends.items():
            if isinstance(backend, DeploymentBackend):
                reports = await self.stats_board.snapshot.remote(name)
                config = config_digest(self.service.backends[name].model_dump(mode="json"))
                out[name] = merge_replica_stats(reports, config)
        quotas = self.tenancy.quotas
        router = {
            "in_flight": self.in_flight,
            "tenants": self.tenancy.stats(request.state.tenant),
            "quota_store": {
                "shared": quotas.url is not None,
                "counted_alone": quotas.counted_alone,
            },
        }
        return {"router": router, "models": out}


def build_api(router: Router) -> FastAPI:
    """A Router replica's FastAPI app: the settings its middleware and error handlers read (on the
    app's ``state``), the middleware, and the routes, which are the replica's bound methods."""
    service = router.service
    api = FastAPI(
        title="Rerank service",
        version="0.1.0",
        description="Reranks candidate passages with local cross-encoders or API rerankers, "
        "with fallback chains. Cohere-compatible on /v1/rerank and /v2/rerank.",
    )
    api.state.max_body_bytes = service.limits.max_body_bytes
    api.state.retry_after_s = service.router.retry_after_s
    api.state.refusal_hold_s = service.router.refusal_hold_s
    api.state.tenancy = router.tenancy
    # Added last runs first: every request gets its id, then its tenant (whose refusals need no
    # body), before the body limit can refuse it.
    api.add_middleware(BodyLimitMiddleware)
    api.add_middleware(TenantMiddleware)
    api.add_middleware(RequestIdMiddleware)
    install_error_handlers(api)
    api.post(
        "/rerank",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        dependencies=JSON_BODY,
    )(router.rerank)
    api.post("/v2/rerank", response_model=CohereResponse, dependencies=JSON_BODY)(
        router.rerank_cohere_v2
    )
    api.post("/v1/rerank", response_model=CohereResponse, dependencies=JSON_BODY)(
        router.rerank_cohere_v1
    )
    api.get("/v1/models", dependencies=AUTH)(router.models)
    api.get("/health")(router.health)
    api.get("/v1/stats", dependencies=AUTH)(router.stats)
    return api
