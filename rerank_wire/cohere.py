"""Cohere's rerank request (v1 and v2, Jina's v1 superset) and answer, as this service speaks them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr


class CohereDocumentIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: StrictStr


class CohereRequestBase(BaseModel):
    """What Cohere's v1 and v2 requests share; fields of theirs this service does not use are
    ignored, so SDKs that send them keep working."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = None
    query: StrictStr
    documents: list[StrictStr | CohereDocumentIn]
    top_n: StrictInt | None = None


class CohereV2Request(CohereRequestBase):
    """``POST /v2/rerank``: Cohere's v2 request."""

    max_tokens_per_doc: StrictInt | None = None
    return_documents: StrictBool = False


class CohereV1Request(CohereRequestBase):
    """``POST /v1/rerank``: Cohere's v1 request, which Jina's request shape extends."""

    return_documents: StrictBool | None = None
    rank_fields: list[StrictStr] | None = None
    max_chunks_per_doc: StrictInt | None = None


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
