"""LangChain document compressor backed by the reranking service (needs ``langchain-core``).

``RerankServiceCompressor`` plugs into ``ContextualCompressionRetriever``: it sends the retrieved
documents' page contents to ``POST /rerank`` and returns the best ``top_n`` as LangChain
``Document``s, each a copy carrying ``metadata["relevance_score"]`` (the service's score in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, SecretStr

from rerank_client.client import AsyncRerankClient, RerankClient, RerankResponse


class RerankServiceCompressor(BaseDocumentCompressor):
    """Rerank retrieved documents with the service; keep the best ``top_n``, best first."""

    model_config = ConfigDict(frozen=False, extra="forbid")

    base_url: str
    #: Route or backend name; None: the service's default route.
    model: str | None = None
    top_n: int | None = 3
    api_key: SecretStr | None = None
    timeout: float = 30.0

    def _key(self) -> str | None:
        return None if self.api_key is None else self.api_key.get_secret_value()

    def _request(self, documents: Sequence[Document], query: str) -> dict[str, Any]:
        return {
            "query": query,
            "documents": [d.page_content for d in documents],
            "top_n": self.top_n,
            "model": self.model,
            "return_documents": False,
        }

    @staticmethod
    def _pick(documents: Sequence[Document], response: RerankResponse) -> list[Document]:
        picked = []
        for result in response.results:
            source = documents[result.index]
            metadata = {**source.metadata, "relevance_score": result.score}
            picked.append(source.model_copy(update={"metadata": metadata}))
        return picked

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The best ``top_n`` of ``documents`` for ``query``, with their relevance scores."""
        if not documents:
            return []
        with RerankClient(self.base_url, self._key(), self.timeout) as client:
            response = client.rerank(**self._request(documents, query))
        return self._pick(documents, response)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async ``compress_documents`` (a real asyncio HTTP call, not a thread)."""
        if not documents:
            return []
        async with AsyncRerankClient(self.base_url, self._key(), self.timeout) as client:
            response = await client.rerank(**self._request(documents, query))
        return self._pick(documents, response)
