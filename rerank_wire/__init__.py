"""The wire contract of the reranking service, defined once.

Three request shapes reach the same chain: the service's own ``/rerank``, Cohere's v2 ``/v2/rerank``,
and Cohere v1 / Jina on ``/v1/rerank`` (Jina's shape is a superset of Cohere v1's). Each is parsed into
``RerankQuery`` and answered by the same code; only the response is shaped per route. Needs pydantic
only, so the client, the router, the naive baseline and the test stubs all share it.
"""

from rerank_wire.cohere import CohereResponse, CohereV1Request, CohereV2Request
from rerank_wire.query import RerankQuery, check_limits, from_cohere_request, from_service_request
from rerank_wire.service import (
    DocumentIn,
    ErrorOut,
    ErrorResponse,
    RerankRequest,
    RerankResponse,
    ResultOut,
    SkipOut,
)

__all__ = [
    "CohereResponse",
    "CohereV1Request",
    "CohereV2Request",
    "DocumentIn",
    "ErrorOut",
    "ErrorResponse",
    "RerankQuery",
    "RerankRequest",
    "RerankResponse",
    "ResultOut",
    "SkipOut",
    "check_limits",
    "from_cohere_request",
    "from_service_request",
]
