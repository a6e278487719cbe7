"""The service's own ``POST /rerank`` request and answer, and the error body of every route.

Used by the router (which validates requests against them and answers in them), the Python client
(which parses answers with them), the naive baseline server and the test stubs: one definition.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from rerank_core.types import LongDocuments


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
    long_documents: LongDocuments | None = None

    @model_validator(mode="after")
    def _one_top(self) -> RerankRequest:
        if self.top_n is not None and self.top_k is not None and self.top_n != self.top_k:
            raise ValueError("give top_n or top_k, not two different values")
        return self


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




class ErrorOut(BaseModel):
    """What went wrong: ``type`` (the error's code), ``message``, the ``field`` it concerns, the
    ``request_id`` to find it in the log, and, for ``all_backends_failed``, what each backend said."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    field: str | None = None
    request_id: str | None = None
    skipped: list[SkipOut] | None = None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {...}}``."""

    error: ErrorOut
