"""Python client of the reranking service: ``RerankClient`` (sync) and ``AsyncRerankClient`` over
httpx, their errors (``rerank_client.errors``), and a LangChain document compressor in
``rerank_client.langchain`` (needs the ``langchain`` extra; imported only when used)."""

from rerank_client.client import (
    AsyncRerankClient,
    RerankClient,
    RerankedDocument,
    RerankResponse,
    parse_response,
    rerank_payload,
)
from rerank_client.errors import (
    MalformedAnswer,
    ServiceError,
    ServiceTimeout,
    ServiceUnreachable,
    TransportFailure,
    error_from_response,
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
