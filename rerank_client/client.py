"""Python HTTP client of the reranking service: ``RerankClient`` (sync) and ``AsyncRerankClient``.

Both speak the service's own ``POST /rerank`` contract plus ``GET /v1/models`` and ``GET /health``.
Request building and response parsing live in module functions shared by the two clients; only the
I/O call differs. An error answer (``{"error": {"type", "message", "field"?}}``) raises the typed
error ``rerank_client.errors`` reads it as; a request the service never answered a
``TransportFailure``, a success that breaks the contract a ``MalformedAnswer`` (the client's own
errors, not a backend's). The API key is sent as a bearer header and never appears in a repr, a
message or a log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from rerank_client.errors import (
    MalformedAnswer,
    ServiceTimeout,
    ServiceUnreachable,
    error_from_response,
)
from rerank_core.types import Document
from rerank_wire import DocumentIn, RerankRequest, RerankResponse, ResultOut

DocumentInput = str | Document | Mapping[str, Any]


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

