"""One Ray Serve deployment per local model, batching requests' pairs across requests."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter as TallyCounter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from ray import serve
from ray.serve import metrics

from deployments.stats import StatsReporter, config_digest
from deployments.timing import ModelAnswer, ModelTiming
from rerank_core.backends import LocalModelBackend, build_backend
from rerank_core.config import BackendConfig, ServingConfig
from rerank_core.errors import BackendRateLimited
from rerank_core.score_cache import ScoreCache, model_fingerprint

log = logging.getLogger("ray.serve")

_CONFIG = TypeAdapter(BackendConfig)

#: A replica that had no second request in flight for this long is "alone": its next request is
#: batched at once instead of waiting ``batch_wait_timeout_s`` for company (``batch_wait_alone``).
COMPANY_WINDOW_S = 1.0

#: Chunks of one request in the batch queue at once: one being scored and the next ready behind
#: it keep the model busy, and a small request arriving meanwhile waits behind two chunks at most.
CHUNKS_IN_FLIGHT = 2

Pairs = list[tuple[str, str]]


@dataclass
class ChunkScores:
    """A chunk's raw scores, and when the batch that scored it started and ended."""

    scores: list[float]
    started: float
    ended: float


def _pair_count(chunks: list[Pairs]) -> int:
    """``@serve.batch``'s size of a batch: its pairs, not its requests."""
    return sum(len(chunk) for chunk in chunks)


@serve.deployment
class LocalModelDeployment:
    """Serves one cross-encoder or bi-encoder.

    ``rerank`` expands a request into (query, text) pairs and answers those it has scored before
    from the score cache. The rest go to ``score_chunk`` as one unit, or in chunks of at most
    ``max_batch_size`` pairs (``CHUNKS_IN_FLIGHT`` at a time) when there are more; a request that
    would take the replica past ``max_pending_pairs`` is refused at once instead
    (``BackendRateLimited``: a fallback or a 429 at the router). ``@serve.batch`` gathers units of
    many requests up to ``max_batch_size`` pairs; each batch is tokenized once on the backend's
    tokenizer thread (``prepare``: sorted by length, cut under the token budget) while the previous
    batch's forward passes run on the model's thread. Batch size and wait come from ``user_config``
    and change without a restart.
    """

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = _CONFIG.validate_python(config)
        serving = self.config.serving
        # OMP_NUM_THREADS comes in the deployment's runtime_env (deployments/app.py).
        threads = serving.resolved_torch_threads
        import torch

        torch.set_num_threads(threads)
        backend = build_backend(name, self.config)
        if not isinstance(backend, LocalModelBackend):
            raise TypeError(f"{name} is not a local model")
        self.backend: LocalModelBackend = backend
        self.torch_threads = threads
        self.cache = ScoreCache(
            model_fingerprint(backend.config), int(serving.score_cache_mib * 2**20)
        )
        self._batch_sizes: TallyCounter[int] = TallyCounter()
        #: Units (a request's pairs, or one chunk of them) that entered the batch queue.
        self.units = 0
        #: ``rerank`` calls being answered now (their pairs queued or in a batch).
        self.in_flight = 0
        #: Pairs of those calls queued or in the model (``max_pending_pairs`` bounds it).
        self.pending_pairs = 0
        #: Requests refused for ``max_pending_pairs``.
        self.refused = 0
        self.max_batch_size = serving.max_batch_size
        self.batch_wait_timeout_s = serving.batch_wait_timeout_s
        self.batch_wait_alone = serving.batch_wait_alone
        #: When a second request was last in flight here (``COMPANY_WINDOW_S``).
        self._company_at = -COMPANY_WINDOW_S
        #: Units queued with no batch wait, their request alone in the replica.
        self.alone_units = 0
        self._batch_size_metric = metrics.Histogram(
            "rerank_model_batch_pairs",
            description="Pairs scored in one batched call of a local model.",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
            tag_keys=("model",),
        )
        self._batch_size_metric.set_default_tags({"model": name})
        self._cache_lookups = metrics.Counter(
            "rerank_score_cache_lookups",
            description="Pairs looked up in a local model's score cache, by result (hit, miss).",
            tag_keys=("model", "result"),
        )
        self._cache_lookups.set_default_tags({"model": name})
        self.reporter = StatsReporter(name)
        self.config_digest = config_digest(config)
        self.reconfigure(
            {
                "max_batch_size": serving.max_batch_size,
                "batch_wait_timeout_s": serving.batch_wait_timeout_s,
            }
        )
        log.info(
            "model %s loaded on %s with %d torch threads", name, self.backend.device, threads
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply batch settings from ``user_config`` (no restart)."""
        if "max_batch_size" in user_config:
            self.max_batch_size = int(user_config["max_batch_size"])
            self.score_chunk.set_max_batch_size(self.max_batch_size)
        if "batch_wait_timeout_s" in user_config:
            self.batch_wait_timeout_s = float(user_config["batch_wait_timeout_s"])
            self.score_chunk.set_batch_wait_timeout_s(self.batch_wait_timeout_s)
        self.reporter.report(self.stats())

    # The configured sizes replace these at start (``reconfigure``); they are the config's defaults.
    @serve.batch(
        max_batch_size=ServingConfig.model_fields["max_batch_size"].default,
        batch_wait_timeout_s=ServingConfig.model_fields["batch_wait_timeout_s"].default,
        batch_size_fn=_pair_count,
        max_concurrent_batches=2,
    )
    async def score_chunk(self, chunks: list[Pairs]) -> list[ChunkScores]:
        """Raw scores of each chunk of pairs in a batch gathered from many requests, with when the
        batch started and how long it took. Two batches run at once: one is tokenized while the
        other is in the model."""
        started = time.perf_counter()
        pairs = [pair for chunk in chunks for pair in chunk]
        self._batch_sizes[len(pairs)] += 1
        self._batch_size_metric.observe(len(pairs))
        raw = await self.backend.forward_async(await self.backend.prepare_async(pairs))
        ended = time.perf_counter()
        out: list[ChunkScores] = []
        start = 0
        for chunk in chunks:
            out.append(ChunkScores(raw[start : start + len(chunk)], started, ended))
            start += len(chunk)
        return out

    async def _score_in_chunks(self, pairs: Pairs, timing: ModelTiming, arrived: float) -> list[float]:
        bound = self.config.serving.max_pending_pairs
        if bound is not None and self.pending_pairs and self.pending_pairs + len(pairs) > bound:
            self.refused += 1
            raise BackendRateLimited(
                f"model {self.name} is overloaded: {self.pending_pairs} pairs pending, "
                f"max_pending_pairs is {bound}",
                backend=self.name,
            )
        self.pending_pairs += len(pairs)
        try:
            chunks = await self._batched(pairs)
        finally:
            self.pending_pairs -= len(pairs)
        first = min(c.started for c in chunks)
        timing.queue_s += first - arrived
        timing.model_s += max(c.ended for c in chunks) - first
        timing.pairs += len(pairs)
        return [score for chunk in chunks for score in chunk.scores]

    def _set_batch_wait(self) -> None:
        """The wait of the batch that the next unit starts: none when this replica has been alone
        for ``COMPANY_WINDOW_S`` (unless ``batch_wait_alone``), else ``batch_wait_timeout_s``.
        ``@serve.batch`` reads it when a unit finds no batch gathering, and keeps it for that
        batch."""
        alone = time.monotonic() - self._company_at > COMPANY_WINDOW_S and not self.batch_wait_alone
        wait = 0.0 if alone else self.batch_wait_timeout_s
        if alone and self.batch_wait_timeout_s:
            self.alone_units += 1
        self.score_chunk.set_batch_wait_timeout_s(wait)

    async def _batched(self, pairs: Pairs) -> list[ChunkScores]:
        size = self.max_batch_size
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        self.units += len(chunks)
        self._set_batch_wait()
        if len(chunks) == 1:
            return [await self.score_chunk(chunks[0])]
        window = asyncio.Semaphore(CHUNKS_IN_FLIGHT)

        async def one(chunk: Pairs) -> ChunkScores:
            async with window:
                return await self.score_chunk(chunk)

        return list(await asyncio.gather(*(one(chunk) for chunk in chunks)))

    async def _score(
        self, pairs: Sequence[tuple[str, str]], timing: ModelTiming, arrived: float
    ) -> list[float]:
        """Raw scores of ``pairs``: from the cache where it holds them, the rest from the model
        (each distinct missing pair scored once)."""
        if not self.cache.max_entries:
            return await self._score_in_chunks(list(pairs), timing, arrived)
        found, keys = self.cache.lookup(pairs)
        missing = list({keys[i]: pairs[i] for i, s in enumerate(found) if s is None}.items())
        hits = len(pairs) - sum(1 for s in found if s is None)
        if hits:
            self._cache_lookups.inc(hits, tags={"result": "hit"})
        timing.cached += hits
        if not missing:
            return [s for s in found if s is not None]
        self._cache_lookups.inc(len(pairs) - hits, tags={"result": "miss"})
        scored = await self._score_in_chunks([pair for _, pair in missing], timing, arrived)
        self.cache.store([key for key, _ in missing], scored)
        fresh = {key: score for (key, _), score in zip(missing, scored, strict=True)}
        return [fresh[key] if s is None else s for s, key in zip(found, keys, strict=True)]

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        long_documents: str | None = None,
    ) -> ModelAnswer:
        """Scored indices into ``documents``, best first, through the shared batches, and where
        the request's time went in this replica."""
        self.in_flight += 1
        if self.in_flight > 1:
            self._company_at = time.monotonic()
        timing = ModelTiming()
        arrived = time.perf_counter()
        try:
            scored = await self.backend.rerank_via(
                functools.partial(self._score, timing=timing, arrived=arrived),
                query,
                documents,
                top_n,
                long_documents=long_documents,
            )
            return ModelAnswer(scored, timing)
        finally:
            self.in_flight -= 1
            # Every answered request, cache hits alone included, updates the replica's figures.
            self.reporter.report(self.stats())

    def stats(self) -> dict[str, Any]:
        """This replica's batching and cache statistics: batches by size in pairs (``{"batches":
        n, "pairs": n, "sizes": {size: count}}``), units queued, current settings, cache hits and
        misses."""
        return {
            "config": self.config_digest,
            "device": self.backend.device,
            "torch_threads": self.torch_threads,
            "in_flight": self.in_flight,
            "pending_pairs": self.pending_pairs,
            "refused": self.refused,
            # Seconds in forward passes: with ``pairs``, the model's own pairs/s.
            "busy_s": round(self.backend.forward_s, 3),
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_s": self.batch_wait_timeout_s,
            "batch_wait_alone": self.batch_wait_alone,
            # Units queued with no batch wait: their request was alone in the replica.
            "alone_units": self.alone_units,
            "units": self.units,
            "batches": sum(self._batch_sizes.values()),
            "pairs": sum(s * c for s, c in self._batch_sizes.items()),
            "sizes": {str(s): c for s, c in sorted(self._batch_sizes.items())},
            "cache": self.cache.info(),
        }

    def device(self) -> str:
        return self.backend.device

    async def check_health(self) -> None:
        """Serve's periodic health probe: fails when the model can no longer score; reports this
        replica's figures, so a replica without traffic stays counted."""
        await self.backend.health_check_async()
        self.reporter.report(self.stats())
