"""The one place an error becomes an HTTP answer: the JSON error body, sent with the status the wire
contract's one table gives it (``rerank_wire.status``), and the rewriting of FastAPI's validation
errors into messages that name the request's field.

Anything that is no ``RerankError`` becomes a 500 whose body carries the request id, never the
exception text.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rerank_core.errors import BackendRateLimited, InvalidRequest, MalformedBody, RerankError
from rerank_wire import ErrorResponse
from rerank_wire.status import HttpError, status_of

log = logging.getLogger("ray.serve")


def error_response(exc: RerankError, request_id: str, retry_after_s: float) -> JSONResponse:
    """The JSON error answer for ``exc``; a 429 tells the client when to come back. (The
    ``X-Request-Id`` header is Serve's proxy's: it carries the same id.)"""
    body = ErrorResponse.model_validate({"error": {**exc.to_dict(), "request_id": request_id}})
    # A quota refusal carries its tenant's RateLimit headers.
    headers = dict(exc.headers)
    status = status_of(exc)
    if status == 429:
        headers["Retry-After"] = f"{math.ceil(retry_after_s)}"
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _field_path(loc: Sequence[Any]) -> tuple[str, bool]:
    """The request field an error's location names, and whether it lay inside a union member
    (pydantic adds the member's type, e.g. ``documents.0.str``, which means nothing to a caller)."""
    parts: list[str] = []
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, str) and (
            part == "str" or part[:1].isupper() or part[:1] == "_" or "[" in part
        ):
            return ".".join(parts), True
        parts.append(str(part))
    return ".".join(parts), False


def validation_error(exc: RequestValidationError) -> InvalidRequest:
    """The typed error for FastAPI's validation failure, naming the first bad field."""
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


def request_id(request: Request) -> str:
    """This request's id (set by the request-id middleware)."""
    return str(request.state.request_id)


def install_error_handlers(api: FastAPI) -> None:
    """Answer every error through ``error_response``; ``api.state.retry_after_s`` must be set
    (and ``api.state.refusal_hold_s`` where refusals for overload are held)."""

    def retry_after(request: Request, exc: RerankError) -> float:
        # A refusal that knows when its queue has room again says so; others the configured wait.
        return getattr(exc, "retry_after_s", None) or request.app.state.retry_after_s

    def answer(request: Request, exc: RerankError) -> JSONResponse:
        return error_response(exc, request_id(request), retry_after(request, exc))

    @api.exception_handler(RerankError)
    async def _rerank_error(request: Request, exc: RerankError) -> JSONResponse:
        if isinstance(exc, BackendRateLimited):
            # Paced: a client that resends at once comes back after the hold, not in a loop; its
            # Retry-After counts what is left of the wait once the hold is over.
            hold = getattr(request.app.state, "refusal_hold_s", 0.0)
            if hold > 0:
                await asyncio.sleep(hold)
                wait = max(0.0, retry_after(request, exc) - hold)
                return error_response(exc, request_id(request), wait)
        return answer(request, exc)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(request, validation_error(exc))

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(request, HttpError(str(exc.detail), exc.status_code))

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in request %s", request_id(request))
        return answer(request, RerankError("internal error; see the service log for this request id"))
