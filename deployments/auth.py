"""Request checks that run before a handler: the service's bearer key, and a JSON content type."""

from __future__ import annotations

from fastapi import Request

from rerank_core.errors import Unauthorized, UnsupportedMediaType


async def require_key(request: Request) -> None:
    """With ``auth.enabled``, the request must present a key of a tenant as a bearer token
    (``deployments.tenancy`` looks it up by its SHA-256 digest, so timing says nothing of how
    close a wrong key came)."""
    if getattr(request.state, "tenant", None) is None:
        raise Unauthorized("a valid API key is required: Authorization: Bearer <key>")


async def require_json(request: Request) -> None:
    """The body must be sent as JSON (``application/json`` or a ``+json`` type)."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {ctype or 'no content type'}",
            field="content-type",
        )
