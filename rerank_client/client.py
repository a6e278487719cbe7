"""Python HTTP client of the reranking service: ``RerankClient`` (sync) and ``AsyncRerankClient``.

Both speak the service's own ``POST /rerank`` contract plus ``GET /v1/models`` and ``GET /health``.
Request building, response parsing and error mapping live in module functions shared by the two
clients; only the I/O call differs. An error answer (``{"error": {"type", "message", "field"?}}``)
becomes the typed error of ``rerank_core.errors`` named by its ``type`` (or, failing that, the kind
the wire contract's status table gives its status: ``rerank_wire.status``); anything else becomes a
``ServiceError``. A request the service never answered raises a ``TransportFailure``, an answer that
breaks the contract a ``MalformedAnswer``: the client's own errors, not a backend's. The API key is
sent as a bearer header and never appears in a repr, a message or a log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

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
from rerank_core.types import Document
from rerank_wire import DocumentIn, RerankRequest, RerankResponse, ResultOut
from rerank_wire.status import HttpError, status_of_kind

#: Name the client gives as ``backend`` of a typed backend error the service answered with.
SERVICE = "rerank-service"

DocumentInput = str | Document | Mapping[str, Any]


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


#: What a result is called on the client's side.
RerankedDocument = ResultOut


def parse_response(body: object) -> RerankResponse:
    """Parse a 200 body of ``POST /rerank``; raises ``MalformedAnswer`` when it breaks the
    contract."""
    try:
        return RerankResponse.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise MalformedAnswer(
            f"the service's answer lacks a valid field ({where}: {first['msg']})"
        ) from None


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


def _json_body(response: httpx.Response, status_body: bool = False) -> Any:
    """The decoded body of a 2xx answer, or the typed error of any other answer. With
    ``status_body``, a non-2xx JSON object that is no error body (a health report) is returned."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if status_body and isinstance(body, dict) and "error" not in body:
        return body
    if response.is_success:
        if body is None:
            raise MalformedAnswer(
                f"the service answered HTTP {response.status_code} with a body that is not JSON"
            )
        return body
    raise error_from_response(response.status_code, body)


def _document(doc: DocumentInput) -> str | DocumentIn:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, Document):
        return DocumentIn(text=doc.text, id=doc.id, metadata=doc.metadata)
    return DocumentIn.model_validate(dict(doc))


def rerank_payload(
    query: str,
    documents: Sequence[DocumentInput],
    top_n: int | None = None,
    model: str | None = None,
    return_documents: bool = True,
) -> dict[str, Any]:
    """The JSON body of ``POST /rerank`` (fields left out where the service's default applies)."""
    request = RerankRequest(
        query=query,
        documents=[_document(d) for d in documents],
        top_n=top_n,
        model=model,
        return_documents=return_documents,
    )
    return request.model_dump(exclude_none=True)


class _ClientBase:
    """What both clients hold: the base URL, headers and timeout, and the error mapping."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Raise httpx's transport failures as the client's ``TransportFailure`` kinds (host only:
        no secrets)."""
        host = urlsplit(self.base_url).netloc.rpartition("@")[2]
        try:
            yield
        except httpx.TimeoutException:
            raise ServiceTimeout(
                f"the service at {host} did not answer within {self.timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            raise ServiceUnreachable(
                f"cannot reach the service at {host} ({type(exc).__name__})"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class RerankClient(_ClientBase):
    """Blocking client of the reranking service; use it as a context manager or call ``close``."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)

    def rerank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        top_n: int | None = None,
        model: str | None = None,
        return_documents: bool = True,
    ) -> RerankResponse:
        """Rerank ``documents`` for ``query``; raises a ``RerankError`` subclass on failure."""
        payload = rerank_payload(query, documents, top_n, model, return_documents)
        with self._transport_errors():
            response = self._http.post("/rerank", json=payload)
        return parse_response(_json_body(response))

    def models(self) -> Any:
        """``GET /v1/models``: what the service serves, as the service describes it."""
        with self._transport_errors():
            return _json_body(self._http.get("/v1/models"))

    def health(self) -> Any:
        """``GET /health``: the service's report (``status``, per-backend state), also when it
        answers 503 because no backend is ready."""
        with self._transport_errors():
            return _json_body(self._http.get("/health"), status_body=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RerankClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRerankClient(_ClientBase):
    """Asyncio client of the reranking service; ``async with`` it or ``await close()``.

    ``max_connections`` bounds the connections kept open (what a load generator sets to its
    concurrency)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_connections: int = 100,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def rerank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        top_n: int | None = None,
        model: str | None = None,
        return_documents: bool = True,
    ) -> RerankResponse:
        """Rerank ``documents`` for ``query``; raises a ``RerankError`` subclass on failure."""
        payload = rerank_payload(query, documents, top_n, model, return_documents)
        with self._transport_errors():
            response = await self._http.post("/rerank", json=payload)
        return parse_response(_json_body(response))

    async def models(self) -> Any:
        """``GET /v1/models``: what the service serves, as the service describes it."""
        with self._transport_errors():
            return _json_body(await self._http.get("/v1/models"))

    async def health(self) -> Any:
        """``GET /health``: the service's report (``status``, per-backend state), also when it
        answers 503 because no backend is ready."""
        with self._transport_errors():
            return _json_body(await self._http.get("/health"), status_body=True)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRerankClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

