"""Python client of the reranking service: ``RerankClient`` (sync) and ``AsyncRerankClient`` over
httpx, and a LangChain document compressor in ``rerank_client.langchain`` (needs the ``langchain``
extra; imported only when used)."""

from rerank_client.client import (
    AsyncRerankClient,
    MalformedAnswer,
    RerankClient,
    RerankedDocument,
    RerankResponse,
    ServiceError,
    ServiceTimeout,
    ServiceUnreachable,
    TransportFailure,
    error_from_response,
    parse_response,
    rerank_payload,
)

__all__ = [
    "AsyncRerankClient",
    "MalformedAnswer",
    "RerankClient",
    "RerankResponse",
    "RerankedDocument",
    "ServiceError",
    "ServiceTimeout",
    "ServiceUnreachable",
    "TransportFailure",
    "error_from_response",
    "parse_response",
    "rerank_payload",
]
