"""API backends: Cohere, Jina, Voyage, and an OpenAI chat model as a reranker. Each names the
environment variable (or mounted file) that holds its key, never the key itself."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from rerank_core.config.base import StrictModel, resolve_secret


class ApiConfig(StrictModel):
    base_url: str | None = None
    #: Environment variable holding the key; ``api_key_file`` (a mounted secret) is read if set.
    api_key_env: str
    api_key_file: str | None = None
    timeout_s: float = Field(10.0, gt=0)

    def api_key(self) -> SecretStr | None:
        """The key from the mounted file or the environment; None when neither is set."""
        return resolve_secret(self.api_key_env, self.api_key_file)


class CohereConfig(ApiConfig):
    type: Literal["cohere"] = "cohere"
    model: str = "rerank-v3.5"
    api_key_env: str = "CO_API_KEY"
    max_tokens_per_doc: int | None = Field(None, ge=1)


class JinaConfig(ApiConfig):
    type: Literal["jina"] = "jina"
    model: str = "jina-reranker-v2-base-multilingual"
    api_key_env: str = "JINA_API_KEY"
    base_url: str = "https://api.jina.ai"


class VoyageConfig(ApiConfig):
    type: Literal["voyage"] = "voyage"
    model: str = "rerank-2"
    api_key_env: str = "VOYAGE_API_KEY"
    #: Voyage's own truncation of over-long inputs.
    truncation: bool = True


class LLMConfig(ApiConfig):
    type: Literal["llm"] = "llm"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(30.0, gt=0)
    mode: Literal["listwise", "pointwise"] = "listwise"
    #: Documents shown to the model at once (listwise) and the sliding step, as RankGPT.
    window_size: int = Field(20, ge=2)
    step: int = Field(10, ge=1)
    #: Characters of each document shown to the model.
    max_doc_chars: int = Field(500, ge=20)
    #: Pointwise: parallel calls in flight.
    max_concurrency: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _step_fits(self) -> LLMConfig:
        if self.step > self.window_size:
            raise ValueError("step must not exceed window_size")
        return self
