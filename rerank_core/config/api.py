"""API backends: Cohere, Jina, Voyage, and an OpenAI chat model as a reranker. Each names the
environment variable (or mounted file) that holds its key, never the key itself."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from rerank_core.config.base import StrictModel, resolve_secret


class ApiConfig(StrictModel):
    """What every API backend shares: where the vendor is, where its key is, how long a call may
    take."""

    base_url: str | None = None
    """The vendor's endpoint; None: the vendor SDK's own (set it for a proxy or a test stub)."""
    api_key_env: str
    """Environment variable holding the key; ``api_key_file`` (a mounted secret) is read first if
    set. A backend whose key is set in neither is disabled, and the route skips it."""
    api_key_file: str | None = None
    """A file holding the key (a mounted Kubernetes Secret); read on every call, so a rotated key
    is picked up without a restart."""
    timeout_s: float = Field(10.0, gt=0)
    """Seconds one call to the vendor may take before it counts as a timeout (retryable)."""

    def api_key(self) -> SecretStr | None:
        """The key from the mounted file or the environment; None when neither is set."""
        return resolve_secret(self.api_key_env, self.api_key_file)


class CohereConfig(ApiConfig):
    """Cohere's rerank API through the official ``cohere`` SDK."""

    type: Literal["cohere"] = "cohere"
    """The backend's kind."""
    model: str = "rerank-v3.5"
    """Cohere's model name."""
    api_key_env: str = "CO_API_KEY"
    """Environment variable holding the key (the SDK's own name for it)."""
    max_tokens_per_doc: int | None = Field(None, ge=1)
    """Cohere's truncation of each document; None: Cohere's default."""


class JinaConfig(ApiConfig):
    """Jina's rerank API (plain HTTP: Jina ships no SDK for it)."""

    type: Literal["jina"] = "jina"
    """The backend's kind."""
    model: str = "jina-reranker-v2-base-multilingual"
    """Jina's model name."""
    api_key_env: str = "JINA_API_KEY"
    """Environment variable holding the key."""
    base_url: str = "https://api.jina.ai"
    """Jina's endpoint."""


class VoyageConfig(ApiConfig):
    """Voyage's rerank API through the official ``voyageai`` SDK."""

    type: Literal["voyage"] = "voyage"
    """The backend's kind."""
    model: str = "rerank-2"
    """Voyage's model name."""
    api_key_env: str = "VOYAGE_API_KEY"
    """Environment variable holding the key (the SDK's own name for it)."""
    truncation: bool = True
    """Voyage's own truncation of over-long inputs; False: Voyage refuses them."""


class LLMConfig(ApiConfig):
    """A chat model (OpenAI's API or any compatible server) as a reranker, through the official
    ``openai`` SDK."""

    type: Literal["llm"] = "llm"
    """The backend's kind."""
    model: str = "gpt-4o-mini"
    """The chat model's name."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key (the SDK's own name for it)."""
    timeout_s: float = Field(30.0, gt=0)
    """Seconds one chat call may take: a listwise window is a long completion."""
    mode: Literal["listwise", "pointwise"] = "listwise"
    """"listwise": the model orders a window of documents (RankGPT's sliding windows);
    "pointwise": one call per document grading it 0-10."""
    window_size: int = Field(20, ge=2)
    """Listwise: documents shown to the model at once, as RankGPT."""
    step: int = Field(10, ge=1)
    """Listwise: how far the window slides, from the end of the list to its start."""
    max_doc_chars: int = Field(500, ge=20)
    """Characters of each document shown to the model."""
    max_concurrency: int = Field(8, ge=1)
    """Calls of this backend in flight at once, across all requests."""

    @model_validator(mode="after")
    def _step_fits(self) -> LLMConfig:
        if self.step > self.window_size:
            raise ValueError("step must not exceed window_size")
        return self
