"""One file per backend family; ``build_backend`` imports only the one a configuration names."""

from __future__ import annotations

import importlib

from rerank_core.backends.base import Backend
from rerank_core.backends.disabled import DisabledBackend
from rerank_core.backends.local import LocalModelBackend
from rerank_core.config import LOCAL_TYPES, BackendConfig

_CLASSES: dict[str, tuple[str, str]] = {
    "cross_encoder": ("rerank_core.backends.cross_encoder", "CrossEncoderBackend"),
    "bi_encoder": ("rerank_core.backends.bi_encoder", "BiEncoderBackend"),
    "causal_lm": ("rerank_core.backends.causal_lm", "CausalLMBackend"),
    "cohere": ("rerank_core.backends.cohere", "CohereBackend"),
    "jina": ("rerank_core.backends.jina", "JinaBackend"),
    "voyage": ("rerank_core.backends.voyage", "VoyageBackend"),
    "llm": ("rerank_core.backends.llm", "LLMBackend"),
}


def build_backend(name: str, config: BackendConfig) -> Backend:
    """Construct the backend a configuration entry describes (local models load their weights)."""
    module_name, class_name = _CLASSES[config.type]
    cls = getattr(importlib.import_module(module_name), class_name)
    backend = cls(name, config)
    if isinstance(backend, LocalModelBackend) and backend.config.batch_cost_tokens is None:
        backend.measure_batch_cost()
    return backend


def build_enabled_backend(name: str, config: BackendConfig) -> Backend:
    """``build_backend``, except that an API backend whose key is not set is a
    ``DisabledBackend``: the service and the CLI skip it the same way in every route."""
    if config.type not in LOCAL_TYPES and config.api_key() is None:
        return DisabledBackend(name, config.api_key_env)
    return build_backend(name, config)


__all__ = ["Backend", "DisabledBackend", "LocalModelBackend", "build_backend", "build_enabled_backend"]
