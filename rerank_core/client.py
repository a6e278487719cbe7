"""Python HTTP client of the reranking service: ``RerankClient`` (sync) and ``AsyncRerankClient``.

Both speak the service's own ``POST /rerank`` contract plus ``GET /v1/models`` and ``GET /health``.
Request building, response parsing and error mapping live in module functions shared by the two
clients; only the I/O call differs. An error answer (``{"error": {"type", "message", "field"?}}``)
becomes the typed error of ``rerank_core.errors`` named by its ``type`` (or, failing that, its
status); anything else becomes a ``ServiceError``. The API key is sent as a bearer header and never
appears in a repr, a message or a log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

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
    RouteError,
    Unauthorized,
)
from rerank_core.types import Document, Skip

#: Name the client gives as ``backend`` on transport errors: the service itself did not answer.
SERVICE = "rerank-service"

DocumentInput = str | Document | Mapping[str, Any]


class ServiceError(RerankError):
    """An error answer from the service that no typed error of ``rerank_core.errors`` fits:
    carries the HTTP ``status``, the body's error ``type`` and ``message``."""

    def __init__(self, message: str, *, status: int, type: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.type = type
        # Instance values shadow the class defaults so ``to_dict`` reports what the service said.
        self.http_status = status
        self.code = type


@dataclass(frozen=True, slots=True)
class RerankedDocument:
    """One result: ``index`` into the request's documents, ``score`` in [0, 1], and what the
    service echoed back (raw score, document text, id, metadata) where it did."""

    index: int
    score: float
    raw_score: float | None = None
    document: str | None = None
    id: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RerankResponse:
    """The service's answer to ``POST /rerank``; ``results`` best first."""

    id: str
    model: str
    backend: str
    results: list[RerankedDocument]
    fallback: bool = False
    degraded: bool = False
    skipped: list[Skip] = field(default_factory=list)
    latency: float | None = None

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> RerankResponse:
        """Parse a 200 body; raises ``BackendUnavailable`` when it lacks the contract's fields."""
        try:
            results = [
                RerankedDocument(
                    index=int(r["index"]),
                    score=float(r["score"]),
                    raw_score=None if r.get("raw_score") is None else float(r["raw_score"]),
                    document=r.get("document"),
                    id=r.get("id"),
                    metadata=r.get("metadata"),
                )
                for r in body["results"]
            ]
            return cls(
                id=str(body.get("id", "")),
                model=str(body.get("model", "")),
                backend=str(body.get("backend", "")),
                results=results,
                fallback=bool(body.get("fallback", False)),
                degraded=bool(body.get("degraded", False)),
                skipped=[Skip(str(s["backend"]), str(s["reason"])) for s in body.get("skipped", [])],
                latency=None if body.get("latency") is None else float(body["latency"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendUnavailable(
                f"the service's answer lacks a valid field ({type(exc).__name__}: {exc})",
                backend=SERVICE,
            ) from None


def _typed_errors() -> dict[str, type[RerankError]]:
    """Every error class of ``rerank_core.errors`` by its ``code`` (the body's ``type``)."""
    found: dict[str, type[RerankError]] = {}
    pending = list(RerankError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__ == errors.__name__:
            found[cls.code] = cls
    return found


_TYPED = _typed_errors()
# When the body names no known type, the status decides (404 stays generic: it may be a wrong path).
_BY_STATUS: dict[int, type[RerankError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: BackendRateLimited,
    503: BackendUnavailable,
    504: BackendTimeout,
}


def error_from_response(status: int, body: object) -> RerankError:
    """The typed error an error answer stands for (``type`` first, then ``status``)."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    type_ = str(error.get("type") or "")
    message = str(error.get("message") or f"the service answered HTTP {status}")
    field_ = error.get("field")
    field_ = None if field_ is None else str(field_)
    cls = _TYPED.get(type_) or _BY_STATUS.get(status)
    if cls is None:
        return ServiceError(message, status=status, type=type_ or "http_error", field=field_)
    if issubclass(cls, AllBackendsFailed):
        skipped = error.get("skipped")
        return AllBackendsFailed(message, skipped=skipped if isinstance(skipped, list) else [])
    if issubclass(cls, BackendError):
        return cls(message, backend=SERVICE, field=field_)
    if issubclass(cls, RouteError):
        return RouteError(message, status)
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
            raise BackendUnavailable(
                f"the service answered HTTP {response.status_code} with a body that is not JSON",
                backend=SERVICE,
            )
        return body
    raise error_from_response(response.status_code, body)


def _document_payload(doc: DocumentInput) -> str | dict[str, Any]:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, Document):
        item: dict[str, Any] = {"text": doc.text}
        if doc.id is not None:
            item["id"] = doc.id
        if doc.metadata is not None:
            item["metadata"] = doc.metadata
        return item
    return dict(doc)


def rerank_payload(
    query: str,
    documents: Sequence[DocumentInput],
    top_n: int | None = None,
    model: str | None = None,
    return_documents: bool = True,
) -> dict[str, Any]:
    """The JSON body of ``POST /rerank`` (fields left out where the service's default applies)."""
    payload: dict[str, Any] = {
        "query": query,
        "documents": [_document_payload(d) for d in documents],
        "return_documents": return_documents,
    }
    if top_n is not None:
        payload["top_n"] = top_n
    if model is not None:
        payload["model"] = model
    return payload


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
        """Map httpx transport failures to the retryable typed errors (host only: no secrets)."""
        host = urlsplit(self.base_url).netloc.rpartition("@")[2]
        try:
            yield
        except httpx.TimeoutException:
            raise BackendTimeout(
                f"the service at {host} did not answer within {self.timeout:g}s", backend=SERVICE
            ) from None
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"cannot reach the service at {host} ({type(exc).__name__})", backend=SERVICE
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
        return RerankResponse.from_dict(_json_body(response))

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
        return RerankResponse.from_dict(_json_body(response))

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


__all__ = [
    "AsyncRerankClient",
    "RerankClient",
    "RerankResponse",
    "RerankedDocument",
    "ServiceError",
    "error_from_response",
    "rerank_payload",
]
