"""Rerank every query of a dataset, in-process (a ``Backend``) or over HTTP (the service), with a
bounded number of queries in flight, timing each query."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tqdm import tqdm

from rerank_client.client import AsyncRerankClient
from rerank_core.backends.base import Backend
from rerank_tools.evaluation.loaders import EvalDataset, EvalQuery


@dataclass(frozen=True, slots=True)
class Reranked:
    """One query's answer: (index, score) best first, and who answered how."""

    order: list[tuple[int, float]]
    backend: str
    fallback: bool = False
    degraded: bool = False


class QueryReranker(Protocol):
    """Reorders one query's candidate texts."""

    async def rerank(self, query: str, texts: Sequence[str]) -> Reranked: ...


class InProcessReranker:
    """A ``Backend`` of this process (local model or API client)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def rerank(self, query: str, texts: Sequence[str]) -> Reranked:
        scored = await self.backend.rerank(query, texts, None)
        return Reranked([(s.index, s.score) for s in scored], self.backend.name)


class HttpReranker:
    """The running service, through ``AsyncRerankClient`` (documents are not echoed back)."""

    def __init__(self, client: AsyncRerankClient, model: str | None = None) -> None:
        self.client = client
        self.model = model

    async def rerank(self, query: str, texts: Sequence[str]) -> Reranked:
        response = await self.client.rerank(query, texts, model=self.model, return_documents=False)
        return Reranked(
            [(r.index, r.score) for r in response.results],
            response.backend,
            fallback=response.fallback,
            degraded=response.degraded,
        )


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """A query's reranked candidates as (docid, score), best first, and its wall time."""

    qid: str
    ranked: list[tuple[str, float]]
    latency_s: float
    backend: str
    fallback: bool
    degraded: bool


def _ranked_docids(query: EvalQuery, order: list[tuple[int, float]]) -> list[tuple[str, float]]:
    """Map indices to docids; candidates an answer left out follow in first-stage order, below
    every returned one, so a short answer cannot change which documents the run holds."""
    seen = {i for i, _ in order}
    ranked = [(query.candidates[i].docid, score) for i, score in order]
    floor = min((score for _, score in order), default=0.0)
    missing = [c for i, c in enumerate(query.candidates) if i not in seen]
    return ranked + [(c.docid, floor - 1.0 - pos) for pos, c in enumerate(missing)]


async def rerank_dataset(
    dataset: EvalDataset,
    reranker: QueryReranker,
    concurrency: int = 1,
    progress: bool = True,
) -> list[QueryOutcome]:
    """Rerank every query (at most ``concurrency`` in flight), in dataset order; the first error
    cancels the rest and propagates."""
    gate = asyncio.Semaphore(max(1, concurrency))
    bar = tqdm(
        total=len(dataset.queries),
        desc="rerank",
        unit="query",
        file=sys.stderr,
        disable=not progress,
    )

    async def one(query: EvalQuery) -> QueryOutcome:
        async with gate:
            started = time.perf_counter()
            answer = await reranker.rerank(query.query, [c.text for c in query.candidates])
            elapsed = time.perf_counter() - started
        bar.update(1)
        return QueryOutcome(
            query.qid,
            _ranked_docids(query, answer.order),
            elapsed,
            answer.backend,
            answer.fallback,
            answer.degraded,
        )

    tasks = [asyncio.ensure_future(one(q)) for q in dataset.queries]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        bar.close()
