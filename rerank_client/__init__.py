"""Python client of the reranking service: ``RerankClient`` (sync) and ``AsyncRerankClient`` over
httpx, and a LangChain document compressor in ``rerank_client.langchain`` (needs the ``langchain``
extra; imported only when used)."""

from rerank_client.client import (
    AsyncRerankClient,
    RerankClient,
    RerankedDocument,
    RerankResponse,
    ServiceError,
    error_from_response,
    parse_response,
    rerank_payload,
)

__all__ = [
    "AsyncRerankClient",
    "RerankClient",
    "RerankResponse",
    "RerankedDocument",
    "ServiceError",
    "error_from_response",
    "parse_response",
    "rerank_payload",
]
