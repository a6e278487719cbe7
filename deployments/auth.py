"""Request checks that run before a handler: the service's bearer key, and a JSON content type."""

from __future__ import annotations

import hmac

from fastapi import Request

from rerank_core.errors import Unauthorized, UnsupportedMediaType


async def require_key(request: Request) -> None:
    """With ``auth.enabled``, the request must present one of the keys as a bearer token; every
    key is compared, without stopping early, so timing says nothing about which came close."""
    keys: list[bytes] | None = request.app.state.service_keys
    if keys is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token.strip().encode() if scheme.lower() == "bearer" else b""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(presented, key)
    if not ok:
        raise Unauthorized("a valid API key is required: Authorization: Bearer <key>")


async def require_json(request: Request) -> None:
    """The body must be sent as JSON (``application/json`` or a ``+json`` type)."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {ctype or 'no content type'}",
            field="content-type",
        )
