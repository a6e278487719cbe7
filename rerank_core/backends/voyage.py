"""Voyage's rerank API (``POST {base_url}/v1/rerank``) through the official ``voyageai`` SDK."""

from __future__ import annotations

from collections.abc import Iterable

import voyageai
import voyageai.error as voyage_error
from pydantic import SecretStr

from rerank_core.backends._http import (
    ApiBackend,
    malformed,
    status_error,
    timed_out,
    unreachable,
)
from rerank_core.config import VoyageConfig


def api_base(base_url: str | None) -> str | None:
    """The SDK's base URL, which must end in ``/v1``: accepted with or without it in configuration
    (``http://host:port`` like the other backends, or Voyage's documented ``.../v1``). None leaves
    the SDK's default (chosen from the key)."""
    if base_url is None:
        return None
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


class VoyageBackend(ApiBackend[VoyageConfig]):
    """Rerank with a Voyage model (``rerank-2`` unless configured) via ``voyageai.AsyncClient``.

    One attempt per call: the SDK retries only when ``max_retries`` > 0, and it is 0 here, since
    the fallback chain owns retries. ``truncation`` is passed as configured. The key
    (``VOYAGE_API_KEY`` or the mounted file) is read on every call; the client is built per call
    with it, which costs nothing: it holds no connection (the SDK opens an aiohttp session per
    request), so there is nothing for ``close()`` to release.
    """

    async def _request(
        self, query: str, documents: list[str], top_n: int | None, key: SecretStr
    ) -> Iterable[tuple[object, object]]:
        client = voyageai.AsyncClient(
            api_key=key.get_secret_value(),
            max_retries=0,
            timeout=self.config.timeout_s,
            base_url=api_base(self.config.base_url),
        )
        try:
            response = await client.rerank(
                query,
                documents,
                model=self.config.model,
                top_k=top_n,
                truncation=self.config.truncation,
            )
        except voyage_error.Timeout:
            raise timed_out(self.name, self.config.timeout_s) from None
        except voyage_error.APIConnectionError as exc:
            raise unreachable(self.name, exc, key) from None
        except voyage_error.VoyageError as exc:
            # The other SDK errors carry the HTTP status (2xx: a body that is not JSON); the body
            # is parsed for 4xx and raw text for 5xx.
            status = exc.http_status
            if status is None or 200 <= status < 300:
                raise malformed(self.name, "the body is not JSON") from None
            body = exc.json_body if exc.json_body is not None else exc.http_body
            raise status_error(status, self.name, body, "detail", key) from None
        except (AttributeError, IndexError, TypeError, UnicodeDecodeError):
            # The SDK reads the body by attribute and indexes ``documents`` with each result's
            # index while building its response object; a body of the wrong shape (no ``data``,
            # items without ``index``, an index out of range) fails there with these.
            raise malformed(self.name, "the body does not match the rerank response") from None
        return [(item.index, item.relevance_score) for item in response.results]
