"""ASGI middleware of the router: one request id per request, the request's tenant (and its
refusals that need no body), and the body-size limit.

They read their settings from the FastAPI app's ``state``, which each Router replica sets on its
own app from its configuration (``deployments.router.build_api``).
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.http_errors import error_response
from deployments.tenancy import RERANK_PATHS, Tenancy
from rerank_core.errors import PayloadTooLarge

#: The header that carries a request's id, in and out (Serve's proxy speaks it too).
REQUEST_ID_HEADER = b"x-request-id"


class RequestIdMiddleware:
    """Give each request one id: the caller's ``X-Request-Id`` when it sent one (Serve's proxy
    passes it on, and sets its own when the caller did not), else a fresh one. The id is put on
    ``request.state.request_id``; Serve's proxy returns it in the answer's ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            incoming = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER, b"")
            rid = incoming.decode("latin-1").strip()[:128] or uuid.uuid4().hex
            scope.setdefault("state", {})["request_id"] = rid
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Answer 413 to a body over ``app.state.max_body_bytes``, by its Content-Length or while it
    streams in (chunked)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        max_bytes: int = state.max_body_bytes
        too_large = PayloadTooLarge(
            f"the request body is larger than {max_bytes} bytes", field="body"
        )
        rid = scope["state"]["request_id"]
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > max_bytes:
                await error_response(too_large, rid, state.retry_after_s)(scope, receive, send)
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
            if seen > max_bytes:
                await error_response(too_large, rid, state.retry_after_s)(scope, receive, send)
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


class TenantMiddleware:
    """Puts the request's tenant on ``request.state.tenant`` (None: no valid key), and refuses a
    rerank request at once, unread, while its tenant may not be admitted (``early_refusal``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        tenancy: Tenancy = state.tenancy
        authorization = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        tenant = tenancy.identify(authorization)
        scope["state"]["tenant"] = tenant
        # Serve's scope path keeps the application's route prefix (its root_path).
        path = scope["path"][len(scope.get("root_path", "")) :]
        if tenant is not None and scope["method"] == "POST" and path in RERANK_PATHS:
            refusal = tenancy.early_refusal(tenant)
            if refusal is not None:
                rid = scope["state"]["request_id"]
                response = error_response(refusal, rid, refusal.retry_after_s or state.retry_after_s)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
