"""The HTTP API's request and response shapes, and the checks of a request against the limits.

Three request shapes reach the same chain: the service's own ``/rerank``, Cohere's v2 ``/v2/rerank``,
and Cohere v1 / Jina on ``/v1/rerank`` (Jina's shape is a superset of Cohere v1's). Each is parsed into
``RerankQuery`` and answered by the same code; only the response is shaped per route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from rerank_core.config import LimitsConfig
from rerank_core.errors import InvalidRequest
from rerank_core.types import Document


class DocumentIn(BaseModel):
    """A document given as an object: its text, and an id and metadata returned with its result."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    id: StrictStr | None = None
    metadata: dict[str, Any] | None = None


class RerankRequest(BaseModel):
    """``POST /rerank``: the service's own request."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: StrictStr
    documents: list[StrictStr | DocumentIn]
    #: How many results to return (best first); absent: all. ``top_k`` is accepted as an alias.
    top_n: StrictInt | None = None
    top_k: StrictInt | None = Field(None, description="Alias of top_n, from the first contract.")
    #: A route (fallback chain) or backend name; absent: the default route.
    model: StrictStr | None = None
    return_documents: StrictBool = True
    #: Long documents: "truncate" to the model's length, or "window" (best overlapping window).
    long_documents: StrictStr | None = Field(None, pattern="^(truncate|window)$")

    @model_validator(mode="after")
    def _one_top(self) -> RerankRequest:
        if self.top_n is not None and self.top_k is not None and self.top_n != self.top_k:
            raise ValueError("give top_n or top_k, not two different values")
        return self


class _CohereDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: StrictStr


class _CohereRequest(BaseModel):
    """What Cohere's v1 and v2 requests share; fields of theirs this service does not use are
    ignored, so SDKs that send them keep working."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = None
    query: StrictStr
    documents: list[StrictStr | _CohereDocument]
    top_n: StrictInt | None = None


class CohereV2Request(_CohereRequest):
    """``POST /v2/rerank``: Cohere's v2 request."""

    max_tokens_per_doc: StrictInt | None = None
    return_documents: StrictBool = False


class CohereV1Request(_CohereRequest):
    """``POST /v1/rerank``: Cohere's v1 request, which Jina's request shape extends."""

    return_documents: StrictBool | None = None
    rank_fields: list[StrictStr] | None = None
    max_chunks_per_doc: StrictInt | None = None


@dataclass
class RerankQuery:
    """One validated rerank, whatever route it came in by."""

    query: str
    documents: list[Document]
    top_n: int | None
    model: str | None
    return_documents: bool
    long_documents: str | None = None

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]


def _to_documents(items: list[Any]) -> list[Document]:
    docs: list[Document] = []
    for item in items:
        if isinstance(item, str):
            docs.append(Document(text=item))
        elif isinstance(item, DocumentIn):
            docs.append(Document(text=item.text, id=item.id, metadata=item.metadata))
        else:
            docs.append(Document(text=item.text))
    return docs


def from_service_request(req: RerankRequest) -> RerankQuery:
    return RerankQuery(
        query=req.query,
        documents=_to_documents(req.documents),
        top_n=req.top_n if req.top_n is not None else req.top_k,
        model=req.model,
        return_documents=req.return_documents,
        long_documents=req.long_documents,
    )


def from_cohere_request(req: CohereV2Request | CohereV1Request) -> RerankQuery:
    return RerankQuery(
        query=req.query,
        documents=_to_documents(req.documents),
        top_n=req.top_n,
        model=req.model,
        return_documents=bool(req.return_documents),
    )


def check_limits(q: RerankQuery, limits: LimitsConfig) -> None:
    """Raise ``InvalidRequest`` naming the field and the limit when ``q`` breaks one."""
    if not q.query.strip():
        raise InvalidRequest("query must not be empty", field="query")
    if len(q.query) > limits.max_query_chars:
        raise InvalidRequest(
            f"query is {len(q.query)} characters; the limit is {limits.max_query_chars}",
            field="query",
        )
    if not q.documents:
        raise InvalidRequest("documents must not be empty", field="documents")
    if len(q.documents) > limits.max_documents:
        raise InvalidRequest(
            f"{len(q.documents)} documents; the limit is {limits.max_documents} per request",
            field="documents",
        )
    total = len(q.query)
    for i, doc in enumerate(q.documents):
        if len(doc.text) > limits.max_document_chars:
            raise InvalidRequest(
                f"document {i} is {len(doc.text)} characters; the limit is "
                f"{limits.max_document_chars}",
                field=f"documents.{i}",
            )
        total += len(doc.text)
    if total > limits.max_request_chars:
        raise InvalidRequest(
            f"the request holds {total} characters; the limit is {limits.max_request_chars}",
            field="documents",
        )
    if q.top_n is not None:
        if q.top_n < 1:
            raise InvalidRequest("top_n must be at least 1", field="top_n")
        if q.top_n > limits.max_documents:
            raise InvalidRequest(
                f"top_n is {q.top_n}; the most it can be is {limits.max_documents}", field="top_n"
            )


class ResultOut(BaseModel):
    index: int
    score: float = Field(description="Relevance in [0, 1].")
    raw_score: float | None = Field(None, description="The source's own score where it differs.")
    document: str | None = None
    id: str | None = None
    metadata: dict[str, Any] | None = None


class SkipOut(BaseModel):
    backend: str
    reason: str


class RerankResponse(BaseModel):
    """``POST /rerank``'s answer."""

    id: str
    model: str = Field(description="The route (or backend) the request selected.")
    backend: str = Field(description="The backend that answered; 'original_order' when degraded.")
    fallback: bool
    degraded: bool
    skipped: list[SkipOut]
    latency: float = Field(description="Seconds spent in the service.")
    results: list[ResultOut]


class CohereDocumentOut(BaseModel):
    text: str


class CohereResultOut(BaseModel):
    index: int
    relevance_score: float
    document: CohereDocumentOut | None = None


class CohereResponse(BaseModel):
    """Cohere's rerank answer (v1 and v2), with Jina's ``model`` and ``usage`` added."""

    id: str
    results: list[CohereResultOut]
    meta: dict[str, Any]
    model: str | None = None
    usage: dict[str, int] | None = None
