"""Reranking without Ray: backends behind one interface, fallback chains, configuration.

    from rerank_core import build_backend, BiEncoderConfig
    backend = build_backend("minilm", BiEncoderConfig())
    ranked = await backend.rerank("query", ["doc a", "doc b"], top_n=1)
"""

from rerank_core.backends import Backend, LocalModelBackend, build_backend
from rerank_core.config import (
    BiEncoderConfig,
    CohereConfig,
    CrossEncoderConfig,
    JinaConfig,
    LLMConfig,
    ServiceConfig,
    VoyageConfig,
    load_config,
)
from rerank_core.fallback import ChainMember, CircuitBreaker, FallbackChain
from rerank_core.types import Document, Lane, RankedResult, Scored

__all__ = [
    "Backend",
    "BiEncoderConfig",
    "ChainMember",
    "CircuitBreaker",
    "CohereConfig",
    "CrossEncoderConfig",
    "Document",
    "FallbackChain",
    "JinaConfig",
    "LLMConfig",
    "Lane",
    "LocalModelBackend",
    "RankedResult",
    "Scored",
    "ServiceConfig",
    "VoyageConfig",
    "build_backend",
    "load_config",
]
