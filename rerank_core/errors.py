"""Typed errors: one class per failure kind, each with the ``code`` an error answer carries.

Backends raise the ``BackendError`` subclasses; the fallback chain retries and falls back on the
retryable ones only. They know nothing of HTTP: the serving layer maps every ``RerankError`` to its
status in exactly one table (``deployments/http_errors.py``). Messages never carry secrets: they
are written by this project from status codes and field names, never copied from request headers.
"""

from __future__ import annotations


class RerankError(Exception):
    """Base of every error this project raises on purpose."""

    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        #: Headers its answer carries besides the status's own (a tenant's quota, set where the
        #: request's tenant is known).
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"type": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidRequest(RerankError):
    """The caller's input is wrong (bad field, over a limit). Not retryable."""

    code = "invalid_request"


class MalformedBody(InvalidRequest):
    """The body is not JSON, or not in the expected content type."""

    code = "malformed_body"


class UnsupportedMediaType(InvalidRequest):
    """The body is sent as something other than JSON."""

    code = "unsupported_media_type"


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"


class UnknownModel(InvalidRequest):
    """The request names a model or route that this service does not serve."""

    code = "unknown_model"


class Unauthorized(RerankError):
    """The caller did not present a valid service API key."""

    code = "unauthorized"


class RouteForbidden(RerankError):
    """The caller's tenant may not use the route or backend its request names."""

    code = "route_forbidden"


class QuotaExceeded(RerankError):
    """The caller's tenant has used up a quota: requests or pairs a minute. Refused before any
    work; ``retry_after_s`` says when the quota has room for the request again, ``headers`` the
    tenant's ``RateLimit-Policy`` and ``RateLimit`` (an overloaded model is ``BackendRateLimited``,
    with another code: that refusal is no fault of the caller's tenant)."""

    code = "quota_exceeded"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        retry_after_s: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})


class ConcurrencyLimited(QuotaExceeded):
    """The caller's tenant has its cap of requests in flight already."""

    code = "concurrency_limited"


class BackendError(RerankError):
    """A backend could not answer. ``retryable`` says whether the chain may retry or fall back."""

    code = "backend_error"
    retryable: bool = False

    def __init__(self, message: str, *, backend: str = "", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.backend = backend


class BackendTimeout(BackendError):
    """The backend did not answer within its deadline."""

    code = "backend_timeout"
    retryable = True


class BackendRateLimited(BackendError):
    """The backend answered 429 or its queue is full. ``retry_after_s``: when the refusing side
    expects to have room again, where it knows (None: the service's configured default)."""

    code = "rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, backend=backend, field=field)
        self.retry_after_s = retry_after_s


class BackendUnavailable(BackendError):
    """5xx, connection refused or reset, a dead replica, an unreadable answer."""

    code = "backend_unavailable"
    retryable = True


class BackendBadRequest(BackendError):
    """The backend rejected the request as malformed (4xx other than 401/403/429)."""

    code = "backend_bad_request"


class BackendAuthError(BackendError):
    """The backend rejected this service's credentials (401/403)."""

    code = "backend_auth_failed"


class BackendDisabled(BackendError):
    """An API backend whose key is not set: it was left off when the service started."""

    code = "backend_disabled"


class AllBackendsFailed(RerankError):
    """Every backend of a route failed and the route forbids the degraded last resort."""

    code = "all_backends_failed"

    def __init__(self, message: str, skipped: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.skipped = skipped

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["skipped"] = self.skipped
        return body
