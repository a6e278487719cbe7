"""One Ray Serve deployment per local model, batching requests' pairs across requests."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter as TallyCounter
from contextlib import nullcontext
from typing import Any, get_args

from pydantic import TypeAdapter
from ray import serve
from ray.serve import metrics

from deployments.stats import StatsReporter, config_digest
from rerank_core.backends import LocalModelBackend, build_backend
from rerank_core.backends.local import ScoredPairs
from rerank_core.config import BackendConfig, ServingConfig
from rerank_core.errors import BackendRateLimited
from rerank_core.lanes import BulkGate
from rerank_core.types import Answer, Lane, RankRequest

log = logging.getLogger("ray.serve")

_CONFIG = TypeAdapter(BackendConfig)

#: A replica that had no second request in flight for this long is "alone": its next request is
#: batched at once instead of waiting ``batch_wait_timeout_s`` for company (``batch_wait_alone``).
#: Interactive work counts as present at the bulk gate for as long after its last request.
COMPANY_WINDOW_S = 1.0

#: Chunks of one interactive request in the batch queue at once: one being scored and the next
#: ready behind it keep the model busy, and a small request arriving meanwhile waits behind two
#: chunks at most.
CHUNKS_IN_FLIGHT = 2

#: Batches ``score_chunk`` runs at once: one tokenized while the other is in the model.
CONCURRENT_BATCHES = 2

#: What a replica counts of each lane (``stats()["lanes"]``): requests, units and pairs sent to
#: the batch queue, requests refused for ``max_pending_pairs``.
LANE_FIGURES = ("requests", "units", "pairs", "refused")

#: A replica sends its figures to the stats board at most this often (and once more after its last
#: request), not once per request: an actor call per request costs the hot path CPU.
REPORT_EVERY_S = 0.25

Pairs = list[tuple[str, str]]


def _pair_count(chunks: list[Pairs]) -> int:
    """``@serve.batch``'s size of a batch: its pairs, not its requests."""
    return sum(len(chunk) for chunk in chunks)


@serve.deployment
class LocalModelDeployment:
    """Serves one local model through the scoring engine (``rerank_core.backends.local``).

    ``answer`` hands the request to the engine (windows, score cache, relevance, top_n); the pairs
    the cache misses come back here (``score_pairs``). An interactive request's go to
    ``score_chunk`` as one unit, or in chunks of at most ``max_batch_size`` pairs
    (``CHUNKS_IN_FLIGHT`` at a time) when there are more; a bulk request's go in chunks of
    ``bulk_chunk_pairs`` (about one forward pass) through the bulk gate (``rerank_core.lanes``),
    which lets few of them into the batch queue while interactive work is present and enough to
    fill the batches while none is. A request that would take the replica past
    ``max_pending_pairs`` (bulk: its share of it) is refused at once instead
    (``BackendRateLimited``: a fallback or a 429 at the router). ``@serve.batch`` gathers units of
    many requests up to ``max_batch_size`` pairs; each batch is tokenized once on the engine's
    tokenizer thread while the previous batch runs on the model's thread. Batch size and wait
    come from ``user_config`` and change without a restart.
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
        backend.pair_scorer = self.score_pairs
        self.torch_threads = threads
        self._batch_sizes: TallyCounter[int] = TallyCounter()
        #: Units (a request's pairs, or one chunk of them) that entered the batch queue.
        self.units = 0
        #: Requests being answered now (their pairs queued or in a batch).
        self.in_flight = 0
        #: Pairs of those requests queued or in the model (``max_pending_pairs`` bounds it).
        self.pending_pairs = 0
        #: Requests refused for ``max_pending_pairs``.
        self.refused = 0
        self.batch_wait_alone = serving.batch_wait_alone
        #: When a second request was last in flight here (``COMPANY_WINDOW_S``).
        self._company_at = -COMPANY_WINDOW_S
        #: When a second interactive request was last in flight here: an interactive unit's
        #: company (bulk beside it enters a short chunk at a time, not worth waiting for).
        self._interactive_company_at = -COMPANY_WINDOW_S
        #: Units queued with no batch wait, no company for them in the replica.
        self.alone_units = 0
        #: Bulk chunks' way into the batch queue, behind interactive work; its slots while no
        #: interactive work is present are set with the batch size (``reconfigure``).
        self.gate = BulkGate(
            serving.bulk_chunks_beside_interactive,
            serving.bulk_chunks_beside_interactive,
            COMPANY_WINDOW_S,
        )
        #: Each lane's ``LANE_FIGURES``.
        self.lanes: dict[Lane, dict[str, int]] = {
            lane: dict.fromkeys(LANE_FIGURES, 0) for lane in get_args(Lane)
        }
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
        self._cache_counted = (0, 0)
        self.reporter = StatsReporter(name)
        self._report_due: asyncio.TimerHandle | None = None
        self.config_digest = config_digest(config)
        # The batch settings are set in one place, ``reconfigure``: here from the serving block,
        # then by Serve from the deployment's ``user_config`` (the same values, or a live change).
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
        """Apply the batch settings in ``user_config`` (``max_batch_size``,
        ``batch_wait_timeout_s``) to this replica and its batcher, without a restart."""
        if "max_batch_size" in user_config:
            self.max_batch_size = int(user_config["max_batch_size"])
            self.score_chunk.set_max_batch_size(self.max_batch_size)
            # With no interactive work, bulk chunks fill every batch that runs at once.
            beside = self.gate.beside_interactive
            filling = math.ceil(CONCURRENT_BATCHES * self.max_batch_size / self.bulk_chunk_pairs)
            self.gate.set_slots(beside, max(beside, filling))
        if "batch_wait_timeout_s" in user_config:
            self.batch_wait_timeout_s = float(user_config["batch_wait_timeout_s"])
            self.score_chunk.set_batch_wait_timeout_s(self.batch_wait_timeout_s)
        self.reporter.report(self.stats())

    # The configured sizes replace these at start (``reconfigure``); they are the config's defaults.
    @serve.batch(
        max_batch_size=ServingConfig.model_fields["max_batch_size"].default,
        batch_wait_timeout_s=ServingConfig.model_fields["batch_wait_timeout_s"].default,
        batch_size_fn=_pair_count,
        max_concurrent_batches=CONCURRENT_BATCHES,
    )
    async def score_chunk(self, chunks: list[Pairs]) -> list[ScoredPairs]:
        """Raw scores of each chunk of pairs in a batch gathered from many requests, with when the
        batch started and ended. Two batches run at once: one is tokenized while the other is in
        the model."""
        started = time.perf_counter()
        pairs = [pair for chunk in chunks for pair in chunk]
        self._batch_sizes[len(pairs)] += 1
        self._batch_size_metric.observe(len(pairs))
        raw = await self.backend.forward_async(await self.backend.prepare_async(pairs))
        ended = time.perf_counter()
        out: list[ScoredPairs] = []
        start = 0
        for chunk in chunks:
            out.append(ScoredPairs(raw[start : start + len(chunk)], started, ended))
            start += len(chunk)
        return out

    async def score_pairs(self, pairs: Pairs, lane: Lane) -> ScoredPairs:
        """The engine's scorer here: ``pairs`` through the cross-request batches, refused at once
        past ``max_pending_pairs`` (bulk: past its ``bulk_queue_share`` of it, so that under
        overload bulk is refused first)."""
        serving = self.config.serving
        bound = serving.max_pending_pairs
        if bound is not None and lane == "bulk":
            bound = max(1, int(bound * serving.bulk_queue_share))
        if bound is not None and self.pending_pairs and self.pending_pairs + len(pairs) > bound:
            self.refused += 1
            self.lanes[lane]["refused"] += 1
            limit = "bulk may fill" if lane == "bulk" else "max_pending_pairs is"
            raise BackendRateLimited(
                f"model {self.name} is overloaded: {self.pending_pairs} pairs pending, "
                f"{limit} {bound}",
                backend=self.name,
            )
        self.pending_pairs += len(pairs)
        try:
            chunks = await self._batched(pairs, lane)
        finally:
            self.pending_pairs -= len(pairs)
        return ScoredPairs(
            [score for chunk in chunks for score in chunk.raw],
            min(c.started for c in chunks),
            max(c.ended for c in chunks),
        )

    @property
    def bulk_chunk_pairs(self) -> int:
        """Pairs of one bulk chunk: ``serving.bulk_chunk_pairs``, else one forward pass on each
        of the model's streams; never more than a batch."""
        pairs = self.config.serving.bulk_chunk_pairs or self.config.batch_size * self.backend.streams
        return min(pairs, self.max_batch_size)

    def _set_batch_wait(self, lane: Lane) -> None:
        """The wait of the batch that the next unit starts: ``batch_wait_timeout_s`` while company
        may come to share it, else none (unless ``batch_wait_alone``). An interactive unit's
        company is another interactive request in flight within ``COMPANY_WINDOW_S``; a bulk
        chunk's is any other request, except beside interactive work, where the gate holds the
        rest of bulk back. ``@serve.batch`` reads the wait when a unit finds no batch gathering,
        and keeps it for that batch."""
        if lane == "bulk" and self.gate.interactive_present:
            alone = True
        else:
            company_at = self._interactive_company_at if lane == "interactive" else self._company_at
            alone = time.monotonic() - company_at > COMPANY_WINDOW_S
        alone = alone and not self.batch_wait_alone
        wait = 0.0 if alone else self.batch_wait_timeout_s
        if alone and self.batch_wait_timeout_s:
            self.alone_units += 1
        self.score_chunk.set_batch_wait_timeout_s(wait)

    async def _batched(self, pairs: Pairs, lane: Lane) -> list[ScoredPairs]:
        """Scores of ``pairs`` by chunk, through the batch queue as their lane enters it."""
        size = self.max_batch_size if lane == "interactive" else self.bulk_chunk_pairs
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        self.units += len(chunks)
        self.lanes[lane]["units"] += len(chunks)
        self.lanes[lane]["pairs"] += len(pairs)
        if lane == "bulk":
            return list(await asyncio.gather(*(self._through_gate(chunk) for chunk in chunks)))
        self._set_batch_wait(lane)
        if len(chunks) == 1:
            return [await self.score_chunk(chunks[0])]
        window = asyncio.Semaphore(CHUNKS_IN_FLIGHT)

        async def one(chunk: Pairs) -> ScoredPairs:
            async with window:
                return await self.score_chunk(chunk)

        return list(await asyncio.gather(*(one(chunk) for chunk in chunks)))

    async def _through_gate(self, chunk: Pairs) -> ScoredPairs:
        """One bulk chunk's scores; it is in the batch queue only while it holds a slot of the
        gate, and a cancelled one (its client gone, its attempt past the deadline) frees its
        place."""
        async with self.gate.bulk():
            self._set_batch_wait("bulk")
            return await self.score_chunk(chunk)

    async def answer(self, request: RankRequest) -> Answer:
        """The engine's answer to ``request`` (ranking and timing), through the shared batches;
        an interactive request holds the bulk gate to its share while it is answered."""
        lane = request.lane
        self.lanes[lane]["requests"] += 1
        self.in_flight += 1
        now = time.monotonic()
        if self.in_flight > 1:
            self._company_at = now
        try:
            with self.gate.interactive() if lane == "interactive" else nullcontext():
                if self.gate.interactive_in_flight > 1:
                    self._interactive_company_at = now
                return await self.backend.answer(request)
        finally:
            self.in_flight -= 1
            self._count_cache_lookups()
            self._report_soon()

    def _count_cache_lookups(self) -> None:
        stats = self.backend.cache.stats
        hits, misses = stats.hits - self._cache_counted[0], stats.misses - self._cache_counted[1]
        if hits:
            self._cache_lookups.inc(hits, tags={"result": "hit"})
        if misses:
            self._cache_lookups.inc(misses, tags={"result": "miss"})
        self._cache_counted = (stats.hits, stats.misses)

    def _report_soon(self) -> None:
        """Report this replica's figures within ``REPORT_EVERY_S``, once for all the requests
        answered meanwhile."""
        if self._report_due is None:
            self._report_due = asyncio.get_running_loop().call_later(REPORT_EVERY_S, self._report)

    def _report(self) -> None:
        self._report_due = None
        self.reporter.report(self.stats())

    def stats(self) -> dict[str, Any]:
        """This replica's batching and cache statistics: batches by size in pairs (``{"batches":
        n, "pairs": n, "sizes": {size: count}}``), units queued, each lane's figures, current
        settings, cache hits and misses."""
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
            # Units queued with no batch wait: no company was coming to share their batch.
            "alone_units": self.alone_units,
            "units": self.units,
            "bulk_chunk_pairs": self.bulk_chunk_pairs,
            # Each lane's figures; bulk's with its chunks in the batch queue and waiting at the gate.
            "lanes": {
                "interactive": dict(self.lanes["interactive"]),
                "bulk": {**self.lanes["bulk"], "inside": self.gate.inside, "waiting": self.gate.waiting},
            },
            "batches": sum(self._batch_sizes.values()),
            "pairs": sum(s * c for s, c in self._batch_sizes.items()),
            "sizes": {str(s): c for s, c in sorted(self._batch_sizes.items())},
            "cache": self.backend.cache.info(),
        }

    def device(self) -> str:
        return self.backend.device

    def __del__(self) -> None:
        """Serve's hook when the replica stops: the engine's threads are shut down."""
        # An __init__ that failed before the model loaded leaves nothing to stop.
        backend: LocalModelBackend | None = getattr(self, "backend", None)
        if backend is not None:
            backend.shutdown()

    async def check_health(self) -> None:
        """Serve's periodic health probe: fails when the model can no longer score; reports this
        replica's figures, so a replica without traffic stays counted."""
        await self.backend.health_check_async()
        self.reporter.report(self.stats())
