"""Typed errors: one class per failure kind, each knowing its HTTP status.

Backends raise the ``BackendError`` subclasses; the fallback chain retries and falls back on the
retryable ones only. The HTTP layer maps every ``RerankError`` to its status in exactly one place
(``deployments/router.py``) by reading ``http_status``. Messages never carry secrets: they are written
by this project from status codes and field names, never copied from a request's headers.
"""

from __future__ import annotations


class RerankError(Exception):
    """Base of every error this project raises on purpose."""

    http_status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"type": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidRequest(RerankError):
    """The caller's input is wrong (bad field, over a limit). Not retryable."""

    http_status = 422
    code = "invalid_request"


class MalformedBody(InvalidRequest):
    """The body is not JSON, or not in the expected content type."""

    http_status = 400
    code = "malformed_body"


class UnsupportedMediaType(InvalidRequest):
    """The body is sent as something other than JSON."""

    http_status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the configured limit."""

    http_status = 413
    code = "payload_too_large"


class UnknownModel(InvalidRequest):
    """The request names a model or route that this service does not serve."""

    http_status = 404
    code = "unknown_model"


class Unauthorized(RerankError):
    """The caller did not present a valid service API key."""

    http_status = 401
    code = "unauthorized"


class RouteError(RerankError):
    """An HTTP-level refusal before any rerank logic: unknown path, wrong method."""

    code = "http_error"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status


class BackendError(RerankError):
    """A backend could not answer. ``retryable`` says whether the chain may retry or fall back."""

    http_status = 424
    code = "backend_error"
    retryable: bool = False

    def __init__(self, message: str, *, backend: str = "", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.backend = backend


class BackendTimeout(BackendError):
    """The backend did not answer within its deadline."""

    http_status = 504
    code = "backend_timeout"
    retryable = True


class BackendRateLimited(BackendError):
    """The backend answered 429 or its queue is full."""

    http_status = 429
    code = "rate_limited"
    retryable = True


class BackendUnavailable(BackendError):
    """5xx, connection refused or reset, a dead replica, an unreadable answer."""

    http_status = 503
    code = "backend_unavailable"
    retryable = True


class BackendBadRequest(BackendError):
    """The backend rejected the request as malformed (4xx other than 401/403/429)."""

    http_status = 424
    code = "backend_bad_request"


class BackendAuthError(BackendError):
    """The backend rejected this service's credentials (401/403)."""

    http_status = 424
    code = "backend_auth_failed"


class AllBackendsFailed(RerankError):
    """Every backend of a route failed and the route forbids the degraded last resort."""

    http_status = 503
    code = "all_backends_failed"

    def __init__(self, message: str, skipped: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.skipped = skipped

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["skipped"] = self.skipped
        return body


def error_for_status(status: int, backend: str, detail: str = "") -> BackendError:
    """Map a vendor HTTP status to the typed error the chain understands."""
    suffix = f": {detail}" if detail else ""
    if status == 429:
        return BackendRateLimited(f"{backend} answered 429 (rate limited){suffix}", backend=backend)
    if status in (401, 403):
        return BackendAuthError(f"{backend} rejected the credentials ({status})", backend=backend)
    if status == 408:
        return BackendTimeout(f"{backend} answered 408 (timeout){suffix}", backend=backend)
    if status >= 500:
        return BackendUnavailable(f"{backend} answered {status}{suffix}", backend=backend)
    return BackendBadRequest(f"{backend} answered {status}{suffix}", backend=backend)
