"""Cohere's rerank API (``POST /v2/rerank``) through the official ``cohere`` SDK."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cohere
import httpx
from cohere.core import ApiError, ParsingError
from cohere.errors import InvalidTokenError
from pydantic import SecretStr

from rerank_core.backends._http import ApiBackend, malformed, status_error, transport_error
from rerank_core.config import CohereConfig


class CohereBackend(ApiBackend[CohereConfig]):
    """Rerank with a Cohere model (``rerank-v3.5`` unless configured) via ``AsyncClientV2``.

    The SDK's own retries are off (``max_retries=0``): it would otherwise retry 408/409/429/5xx and
    refused connections twice with backoff inside one attempt, hiding failures from the fallback
    chain, which owns retries, deadlines and circuit breaking. The key is read from configuration
    (``CO_API_KEY`` or the mounted file) on every call and sent with that request, so a rotated
    secret takes effect without a restart. ``close()`` closes the HTTP connection pool.
    """

    def __init__(self, name: str, config: CohereConfig) -> None:
        super().__init__(name, config)
        # Our own pool, so close() can close it without reaching into the SDK.
        self._http = httpx.AsyncClient(timeout=config.timeout_s)
        self._client = cohere.AsyncClientV2(
            # The client refuses to exist without a token; the real one goes with each request
            # (below), so a service starts even while the key is missing, and reports it per call.
            api_key="",
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
            httpx_client=self._http,
        )

    async def _request(
        self, query: str, documents: list[str], top_n: int | None, key: SecretStr
    ) -> Iterable[tuple[object, object]]:
        # Unset options are left out: the SDK would send an explicit None as JSON null.
        options: dict[str, Any] = {}
        if top_n is not None:
            options["top_n"] = top_n
        if self.config.max_tokens_per_doc is not None:
            options["max_tokens_per_doc"] = self.config.max_tokens_per_doc
        try:
            response = await self._client.rerank(
                model=self.config.model,
                query=query,
                documents=documents,
                request_options={
                    "additional_headers": {"Authorization": f"Bearer {key.get_secret_value()}"}
                },
                **options,
            )
        except ApiError as exc:
            # The SDK raises ApiError with the 2xx status when a success body is not JSON.
            if exc.status_code is None or 200 <= exc.status_code < 300:
                raise malformed(self.name, "the body is not JSON") from None
            # 498 is Cohere's "invalid or expired token".
            status = 401 if isinstance(exc, InvalidTokenError) else exc.status_code
            raise status_error(status, self.name, exc.body, "message", key) from None
        except (ParsingError, TypeError):
            # The SDK builds its response model with ``model_construct(**body)``: a body (or a
            # result) that is not a JSON object fails there with TypeError.
            raise malformed(self.name, "the body does not match the rerank response") from None
        except UnicodeDecodeError:
            raise malformed(self.name, "the body is not UTF-8 JSON") from None
        except httpx.RequestError as exc:
            raise transport_error(exc, self.name, self.config.timeout_s, key) from None
        # The SDK builds its response models without validation, so check the shape here.
        results = getattr(response, "results", None)
        if not isinstance(results, list):
            raise malformed(self.name, "no results list")
        return [
            (getattr(item, "index", None), getattr(item, "relevance_score", None))
            for item in results
        ]

    async def close(self) -> None:
        await self._http.aclose()
