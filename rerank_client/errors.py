"""The client's errors: a request the service never answered (``TransportFailure``), a success
that breaks the contract (``MalformedAnswer``), and the reading of an error answer into the typed
error of ``rerank_core.errors`` its ``type`` names (or, failing that, the kind the wire contract's
status table gives its status: ``rerank_wire.status``), else a ``ServiceError``."""

from __future__ import annotations

from rerank_core import errors
from rerank_core.errors import (
    AllBackendsFailed,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    RerankError,
    Unauthorized,
)
from rerank_wire.status import HttpError, status_of_kind

#: Name the client gives as ``backend`` of a typed backend error the service answered with.
SERVICE = "rerank-service"

class ServiceError(HttpError):
    """An error answer from the service that no typed error of ``rerank_core.errors`` fits (an
    unknown path or method among them): carries the HTTP ``status``, the body's error ``type`` and
    ``message``."""

    def __init__(self, message: str, *, status: int, type: str, field: str | None = None) -> None:
        super().__init__(message, status, field=field)
        self.type = type
        # The instance's code shadows the class default so ``to_dict`` reports what the service said.
        self.code = type


class MalformedAnswer(RerankError):
    """The service answered success with a body that breaks the contract (not JSON, a field
    missing or invalid)."""

    code = "malformed_answer"


class TransportFailure(RerankError):
    """The request got no answer from the service; sending it again later may succeed. Messages
    name the service's host only."""

    code = "transport_failure"
    retryable = True


class ServiceUnreachable(TransportFailure):
    """The service could not be reached: the connection was refused, reset or never made."""

    code = "service_unreachable"


class ServiceTimeout(TransportFailure):
    """The service did not answer within the client's ``timeout``."""

    code = "service_timeout"


def _typed_errors() -> dict[str, type[RerankError]]:
    """Every error class of ``rerank_core.errors`` by its ``code`` (the body's ``type``), and
    ``ServiceError`` for the service's HTTP-level refusals (``http_error``)."""
    found: dict[str, type[RerankError]] = {ServiceError.code: ServiceError}
    pending = list(RerankError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__ == errors.__name__:
            found[cls.code] = cls
    return found


_TYPED = _typed_errors()
#: The kinds an answer that names no known type is read as (Serve's proxy refusing in plain text,
#: a gateway's timeout), by the status the wire contract's table gives each. A 404 stays generic:
#: it may be a wrong path.
_BY_STATUS: dict[int, type[RerankError]] = {
    status_of_kind(kind): kind
    for kind in (
        Unauthorized,
        PayloadTooLarge,
        InvalidRequest,
        BackendRateLimited,
        BackendUnavailable,
        BackendTimeout,
    )
}


def error_from_response(status: int, body: object) -> RerankError:
    """The typed error an error answer with HTTP ``status`` stands for: the kind its body's
    ``type`` names, else the kind its status stands for, else a ``ServiceError`` carrying both."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    type_ = str(error.get("type") or "")
    message = str(error.get("message") or f"the service answered HTTP {status}")
    field_ = error.get("field")
    field_ = None if field_ is None else str(field_)
    cls = _TYPED.get(type_) or _BY_STATUS.get(status)
    if cls is None or cls is ServiceError:
        return ServiceError(message, status=status, type=type_ or "http_error", field=field_)
    if issubclass(cls, AllBackendsFailed):
        skipped = error.get("skipped")
        return AllBackendsFailed(message, skipped=skipped if isinstance(skipped, list) else [])
    if issubclass(cls, BackendError):
        return cls(message, backend=SERVICE, field=field_)
    return cls(message, field=field_)
