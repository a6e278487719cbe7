"""The one interface every reranker implements."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence

from rerank_core.types import Scored, top_n_of


class Backend(abc.ABC):
    """A reranker. ``rerank`` returns scored indices into ``documents``, best first.

    ``top_n`` None means all; a ``top_n`` larger than the list means all. A backend that cannot answer
    raises a ``rerank_core.errors.BackendError`` subclass, never anything else on purpose.
    """

    #: Name used in responses, logs and metrics; set from configuration.
    name: str

    @abc.abstractmethod
    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: str | None = None,
    ) -> list[Scored]:
        """Score ``documents`` against ``query`` and return the best ``top_n``, best first.

        ``long_documents`` ("truncate" or "window") overrides the configured handling of documents
        longer than the model's input; backends that truncate on the vendor's side ignore it.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release clients or connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LocalModelBackend(Backend):
    """A model that scores (query, document) pairs in this process.

    Subclasses implement ``score_pairs`` (raw scores, input order) and ``to_relevance`` (raw into
    [0, 1]). ``score_pairs`` is what a Serve deployment calls with pairs from many requests.
    """

    @abc.abstractmethod
    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Raw scores of ``pairs``, in input order. Blocking: run it off the event loop."""

    @abc.abstractmethod
    def to_relevance(self, raw: float) -> float:
        """Map one raw score into [0, 1]."""

    def scored(self, raw_scores: Sequence[float]) -> list[Scored]:
        """Wrap raw scores (input order) into ``Scored`` items."""
        return [
            Scored(index=i, score=self.to_relevance(r), raw_score=float(r))
            for i, r in enumerate(raw_scores)
        ]

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> list[Scored]:
        if not documents:
            return []
        raw = await asyncio.to_thread(self.score_pairs, [(query, d) for d in documents])
        return top_n_of(self.scored(raw), top_n)
