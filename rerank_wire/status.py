"""The HTTP status of every error kind, in one table: the Router answers an error with it
(``deployments/http_errors.py``) and the client reads an answer's kind back by it
(``rerank_client``). The core's errors know no HTTP; the wire contract is where they meet it."""

from __future__ import annotations

from rerank_core.errors import (
    AllBackendsFailed,
    BackendBadRequest,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    MalformedBody,
    PayloadTooLarge,
    QuotaExceeded,
    RerankError,
    RouteForbidden,
    Unauthorized,
    UnknownModel,
    UnsupportedMediaType,
)

#: HTTP status of each error kind; a subclass not listed takes its nearest listed base's.
STATUS: dict[type[RerankError], int] = {
    MalformedBody: 400,
    Unauthorized: 401,
    RouteForbidden: 403,
    UnknownModel: 404,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidRequest: 422,
    BackendError: 424,
    BackendBadRequest: 424,
    BackendRateLimited: 429,
    QuotaExceeded: 429,
    BackendUnavailable: 503,
    AllBackendsFailed: 503,
    BackendTimeout: 504,
    RerankError: 500,
}


class HttpError(RerankError):
    """A refusal at the HTTP level, before any rerank logic (an unknown path, a wrong method),
    which carries its own ``status``."""

    code = "http_error"

    def __init__(self, message: str, status: int, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status


def status_of_kind(kind: type[RerankError]) -> int:
    """The HTTP status errors of ``kind`` are answered with (its nearest listed base's)."""
    for cls in kind.__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def status_of(exc: RerankError) -> int:
    """The HTTP status ``exc`` is answered with: its own for an ``HttpError``, else its kind's."""
    if isinstance(exc, HttpError):
        return exc.status
    return status_of_kind(type(exc))
