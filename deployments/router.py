"""The FastAPI ingress: parse, authenticate, pick the route's fallback chain, answer in one shape.

Every ``RerankError`` becomes its HTTP status here and nowhere else; anything unexpected becomes a
500 whose body carries the request id, never the exception text.
"""


import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve import metrics
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rerank_core.backends import Backend, build_backend
from rerank_core.config import LOCAL_TYPES, ServiceConfig, load_config
from rerank_core.errors import (
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    MalformedBody,
    PayloadTooLarge,
    RerankError,
    RouteError,
    Unauthorized,
    UnsupportedMediaType,
)
from rerank_core.fallback import CircuitBreaker, FallbackChain, build_chain
from rerank_core.schemas import (
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
from rerank_core.types import RankedResult, Scored

log = logging.getLogger("ray.serve")


class DeploymentBackend(Backend):
    """A local model served by its own deployment, reached through its ``DeploymentHandle``.

    Ray's failures become the typed errors the chain understands: a full queue is a rate limit, a
    dead or missing replica is unavailable, and an error raised inside the model is unavailable too
    (another backend can still answer).
    """

    def __init__(self, name: str, handle: DeploymentHandle) -> None:
        self.name = name
        self.handle = handle

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: str | None = None,
    ) -> list[Scored]:
        try:
            return await self.handle.rerank.remote(query, list(documents), top_n, long_documents)
        except BackPressureError:
            raise BackendRateLimited(f"model {self.name} is overloaded", backend=self.name) from None
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, BackendError):
                raise cause from None
            raise BackendUnavailable(
                f"model {self.name} failed ({type(cause).__name__})", backend=self.name
            ) from None
        except (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError) as exc:
            raise BackendUnavailable(
                f"model {self.name} is unavailable ({type(exc).__name__})", backend=self.name
            ) from None


class DisabledBackend(Backend):
    """An API backend whose key is not set: the chain skips it with a reason that says so."""

    def __init__(self, name: str, key_env: str) -> None:
        self.name = name
        self.key_env = key_env

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: str | None = None,
    ) -> list[Scored]:
        raise BackendUnavailable(
            f"{self.name} is not enabled: {self.key_env} is not set", backend=self.name
        )


class BodyLimitMiddleware:
    """Answer 413 to a body over ``max_bytes``, by its Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(
            f"the request body is larger than {self.max_bytes} bytes", field="body"
        )
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await error_response(too_large, uuid.uuid4().hex)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): buffer up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await error_response(too_large, uuid.uuid4().hex)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def error_response(
    exc: RerankError, request_id: str, retry_after_s: int | None = None
) -> JSONResponse:
    """The one place an error becomes an HTTP answer; a 429 carries ``Retry-After`` when
    ``retry_after_s`` is given."""
    body = {"error": {**exc.to_dict(), "request_id": request_id}}
    headers = {"X-Request-Id": request_id}
    if exc.http_status == 429 and retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def _request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def _field_path(loc: Sequence[Any]) -> tuple[str, bool]:
    """The request field an error's location names, and whether it lay inside a union member
    (pydantic adds the member's type, e.g. ``documents.0.str``, which means nothing to a caller)."""
    parts: list[str] = []
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, str) and (part == "str" or part[:1].isupper() or part[:1] == "_" or "[" in part):
            return ".".join(parts), True
        parts.append(str(part))
    return ".".join(parts), False


def _validation_message(exc: RequestValidationError) -> InvalidRequest:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return MalformedBody("the body is not valid JSON", field="body")
    field, in_union = _field_path(first.get("loc", ()))
    if in_union:
        return InvalidRequest(
            f"{field}: must be a string or an object with a string 'text' (and optional 'id', "
            "'metadata')",
            field=field,
        )
    field = field or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidRequest(f"{field}: {first.get('msg', 'invalid')}{more}", field=field)


def create_api(service: ServiceConfig) -> FastAPI:
    """The FastAPI app with its error handlers and body limit; routes are added by ``Router``."""
    api = FastAPI(
        title="Rerank service",
        version="0.1.0",
        description="Reranks candidate passages with local cross-encoders or API rerankers, "
        "with fallback chains. Cohere-compatible on /v1/rerank and /v2/rerank.",
    )
    api.add_middleware(BodyLimitMiddleware, max_bytes=service.limits.max_body_bytes)

    @api.exception_handler(RerankError)
    async def _rerank_error(request: Request, exc: RerankError) -> JSONResponse:
        return error_response(exc, _request_id(request), service.router.retry_after_s)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_message(exc), _request_id(request))

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(RouteError(str(exc.detail), exc.status_code), _request_id(request))

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = _request_id(request)
        log.exception("unexpected error in request %s", rid)
        err = RerankError("internal error; see the service log for this request id")
        return error_response(err, rid)

    return api


def make_router(service_dict: dict[str, Any]) -> Any:
    """The Router deployment class for this configuration (FastAPI routes need the limits at
    class-definition time, so the class is made per application)."""
    service = load_config(service_dict)
    api = create_api(service)

    async def require_key(request: Request) -> None:
        if not service.auth.enabled:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
        # Compare against every key without stopping early, so timing says nothing.
        ok = False
        for key in request.app.state.service_keys:
            ok |= hmac.compare_digest(presented, key)
        if not ok:
            raise Unauthorized("a valid API key is required: Authorization: Bearer <key>")

    async def require_json(request: Request) -> None:
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise UnsupportedMediaType(
                f"send the body as application/json, not {ctype or 'no content type'}",
                field="content-type",
            )

    auth = [Depends(require_key)]
    json_body = [Depends(require_key), Depends(require_json)]

    @serve.deployment
    @serve.ingress(api)
    class Router:
        """Holds a fallback chain per route over handles to model deployments and API backends."""

        def __init__(self, model_handles: dict[str, DeploymentHandle]) -> None:
            self.service = service
            # Keys are read here, in the replica, so they never travel inside the pickled app.
            keys = [k.get_secret_value().encode() for k in service.auth.load_keys()]
            if service.auth.enabled and not keys:
                raise RerankError(
                    f"auth is enabled but no key is set in {service.auth.api_keys_env}"
                    + (f" or {service.auth.api_keys_file}" if service.auth.api_keys_file else "")
                )
            api.state.service_keys = keys
            self.backends: dict[str, Backend] = {}
            for name, cfg in service.backends.items():
                if cfg.type in LOCAL_TYPES:
                    self.backends[name] = DeploymentBackend(name, model_handles[name])
                elif cfg.api_key() is None:
                    self.backends[name] = DisabledBackend(name, cfg.api_key_env)
                    log.warning("backend %s disabled: %s is not set", name, cfg.api_key_env)
                else:
                    self.backends[name] = build_backend(name, cfg)
            self.breakers = {name: CircuitBreaker(service.breaker) for name in self.backends}
            self.chains: dict[str, FallbackChain] = {}
            #: Requests being answered now; a disconnected client's request leaves this at once.
            self.in_flight = 0
            self.requests = metrics.Counter(
                "rerank_requests",
                description="Rerank requests by route, answering backend and status.",
                tag_keys=("route", "backend", "status"),
            )
            self.fallbacks = metrics.Counter(
                "rerank_fallbacks",
                description="Requests answered by a backend other than the route's first.",
                tag_keys=("route", "backend"),
            )
            self.latency = metrics.Histogram(
                "rerank_request_latency_s",
                description="Seconds from request to answer inside the router.",
                boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
                tag_keys=("route",),
            )

        def chain_for(self, model: str | None) -> tuple[str, FallbackChain]:
            route_name, route = self.service.resolve_route(model)
            chain = self.chains.get(route_name)
            if chain is None:
                chain = build_chain(route, self.backends, self.breakers)
                self.chains[route_name] = chain
            return route_name, chain

        async def run(self, q: RerankQuery) -> tuple[str, RankedResult, float]:
            start = time.perf_counter()
            check_limits(q, self.service.limits)
            route_name, chain = self.chain_for(q.model)
            status = "ok"
            backend = "-"
            self.in_flight += 1
            try:
                result = await asyncio.wait_for(
                    chain.rerank(q.query, q.texts, q.top_n, long_documents=q.long_documents),
                    timeout=self.service.limits.request_timeout_s,
                )
                backend = result.backend
                if result.fallback:
                    self.fallbacks.inc(tags={"route": route_name, "backend": backend})
                return route_name, result, time.perf_counter() - start
            except TimeoutError:
                status = "deadline"
                raise BackendTimeout(
                    "the request did not finish within "
                    f"{self.service.limits.request_timeout_s:g}s"
                ) from None
            except RerankError as exc:
                status = exc.code
                raise
            except asyncio.CancelledError:
                status = "cancelled"
                raise
            finally:
                self.in_flight -= 1
                self.requests.inc(
                    tags={"route": route_name, "backend": backend, "status": status}
                )
                self.latency.observe(time.perf_counter() - start, tags={"route": route_name})

        @api.post(
            "/rerank",
            response_model=RerankResponse,
            response_model_exclude_none=True,
            dependencies=json_body,
        )
        async def rerank(self, body: RerankRequest, request: Request) -> dict[str, Any]:
            """Rerank documents; the service's own request and answer."""
            q = from_service_request(body)
            route_name, result, latency = await self.run(q)
            return {
                "id": _request_id(request),
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

        async def _cohere(self, q: RerankQuery, request: Request, version: str) -> JSONResponse:
            route_name, result, _ = await self.run(q)
            rid = _request_id(request)
            body = CohereResponse(
                id=rid,
                results=[
                    {
                        "index": s.index,
                        "relevance_score": s.score,
                        "document": {"text": q.documents[s.index].text}
                        if q.return_documents
                        else None,
                    }
                    for s in result.results
                ],
                meta={"api_version": {"version": version}, "billed_units": {"search_units": 1}},
                model=route_name,
                usage={"total_tokens": 0},
            )
            headers = {
                "X-Request-Id": rid,
                "X-Rerank-Backend": result.backend,
                "X-Rerank-Fallback": str(result.fallback).lower(),
                "X-Rerank-Degraded": str(result.degraded).lower(),
            }
            return JSONResponse(body.model_dump(exclude_none=True), headers=headers)

        @api.post("/v2/rerank", response_model=CohereResponse, dependencies=json_body)
        async def rerank_cohere_v2(self, body: CohereV2Request, request: Request) -> JSONResponse:
            """Cohere v2 compatible: point the cohere SDK's ``base_url`` here."""
            return await self._cohere(from_cohere_request(body), request, "2")

        @api.post("/v1/rerank", response_model=CohereResponse, dependencies=json_body)
        async def rerank_cohere_v1(self, body: CohereV1Request, request: Request) -> JSONResponse:
            """Cohere v1 and Jina compatible."""
            return await self._cohere(from_cohere_request(body), request, "1")

        @api.get("/v1/models", dependencies=auth)
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

        @api.get("/health")
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
            if isinstance(backend, DisabledBackend):
                info["state"] = "disabled"
                info["detail"] = f"{backend.key_env} is not set"
            elif isinstance(backend, DeploymentBackend):
                try:
                    info["device"] = await asyncio.wait_for(
                        backend.handle.device.remote(), timeout=5
                    )
                    info["state"] = "ready" if breaker != "open" else "degraded"
                except (TimeoutError, RayActorError, RayTaskError, ReplicaUnavailableError,
                        DeploymentUnavailableError, BackPressureError) as exc:
                    info["state"] = "unavailable"
                    info["detail"] = type(exc).__name__
            else:
                info["state"] = "ready" if breaker != "open" else "degraded"
            return info

        @api.get("/v1/stats", dependencies=auth)
        async def stats(self) -> dict[str, Any]:
            """Requests in flight in this router replica, and the batching statistics of each local
            model's replica that answers."""
            out: dict[str, Any] = {}
            for name, backend in self.backends.items():
                if isinstance(backend, DeploymentBackend):
                    out[name] = await backend.handle.stats.remote()
            return {"router": {"in_flight": self.in_flight}, "models": out}

    return Router

