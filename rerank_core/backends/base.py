"""The one interface every reranker implements."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from rerank_core.types import Answer, LongDocuments, RankRequest, Scored


class Backend(abc.ABC):
    """A reranker: ``answer`` takes one ``RankRequest`` and returns one ``Answer`` whose results
    are scored indices into the request's documents, best first.

    ``top_n`` None means all; a ``top_n`` larger than the list means all. A backend that cannot answer
    raises a ``rerank_core.errors.BackendError`` subclass, never anything else on purpose.
    """

    #: Name used in responses, logs and metrics; set from configuration.
    name: str

    @abc.abstractmethod
    async def answer(self, request: RankRequest) -> Answer:
        """Score ``request.documents`` against ``request.query``; the best ``request.top_n``,
        best first, and (a local model) the request's timing."""

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: LongDocuments | None = None,
    ) -> list[Scored]:
        """``answer``'s results for a request made of these arguments."""
        request = RankRequest(query, documents, top_n, long_documents)
        return (await self.answer(request)).results

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release clients or connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
