"""One validated rerank, whatever route it came in by, and the checks against the limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rerank_core.config import LimitsConfig
from rerank_core.errors import InvalidRequest
from rerank_core.types import Document
from rerank_wire.cohere import CohereV1Request, CohereV2Request
from rerank_wire.service import DocumentIn, RerankRequest


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


