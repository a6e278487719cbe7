"""Jina's rerank API (``POST {base_url}/v1/rerank``) over plain HTTP with httpx."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import SecretStr

from rerank_core.backends._http import ApiBackend, malformed, status_error, transport_error
from rerank_core.config import JinaConfig


class JinaBackend(ApiBackend[JinaConfig]):
    """Rerank with a Jina model through its HTTP API, one attempt per call (the chain retries).

    The bearer key (``JINA_API_KEY`` or the mounted file) is read on every call. Documents are not
    asked back (``return_documents: false``): the service already holds them. ``close()`` closes
    the HTTP connection pool.
    """

    def __init__(self, name: str, config: JinaConfig) -> None:
        super().__init__(name, config)
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            timeout=config.timeout_s,
        )

    async def _request(
        self, query: str, documents: list[str], top_n: int | None, key: SecretStr
    ) -> Iterable[tuple[object, object]]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "query": query,
            "documents": documents,
            "return_documents": False,
        }
        if top_n is not None:
            body["top_n"] = top_n
        try:
            response = await self._http.post(
                "/v1/rerank",
                json=body,
                headers={"Authorization": f"Bearer {key.get_secret_value()}"},
            )
        except httpx.RequestError as exc:
            raise transport_error(exc, self.name, self.config.timeout_s, key) from None
        if not response.is_success:
            raise status_error(response.status_code, self.name, response.text, "detail", key)
        try:
            payload = response.json()
        except ValueError:  # not JSON, or not UTF-8
            raise malformed(self.name, "the body is not JSON") from None
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise malformed(self.name, "no results list")
        return [
            (item.get("index"), item.get("relevance_score"))
            if isinstance(item, dict)
            else (None, None)
            for item in results
        ]

    async def close(self) -> None:
        await self._http.aclose()
