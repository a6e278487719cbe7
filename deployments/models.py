"""One Ray Serve deployment per local model, batching (query, document) pairs across requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as TallyCounter
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter
from ray import serve
from ray.serve import metrics

from deployments.stats import StatsReporter
from rerank_core.backends import LocalModelBackend, build_backend
from rerank_core.config import BackendConfig
from rerank_core.types import Scored

log = logging.getLogger("ray.serve")

_CONFIG = TypeAdapter(BackendConfig)


@serve.deployment
class LocalModelDeployment:
    """Serves one cross-encoder or bi-encoder.

    ``rerank`` splits a request into pairs and submits each to ``score_pair``, which ``@serve.batch``
    gathers across concurrent requests; the backend's ``score_pairs`` then sorts each batch by token
    length and cuts it under the token budget, so no forward pass outgrows GPU memory and padding
    stays small. Batch size and wait come from ``user_config`` and change without a restart.
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
        self._batch_sizes: TallyCounter[int] = TallyCounter()
        #: ``rerank`` calls being answered now (their pairs queued or in a batch).
        self.in_flight = 0
        #: Seconds spent in forward passes (with ``pairs``, the model's own pairs/s).
        self.busy_s = 0.0
        self._batch_size_metric = metrics.Histogram(
            "rerank_model_batch_pairs",
            description="Pairs scored in one batched call of a local model.",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
            tag_keys=("model",),
        )
        self._batch_size_metric.set_default_tags({"model": name})
        self.batch_settings: dict[str, float] = {}
        self.reporter = StatsReporter(name)
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
            self.batch_settings["max_batch_size"] = int(user_config["max_batch_size"])
            self.score_pair.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.batch_settings["batch_wait_timeout_s"] = float(user_config["batch_wait_timeout_s"])
            self.score_pair.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
        self.reporter.report(self.stats())

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def score_pair(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Raw scores of a batch of pairs gathered from many requests."""
        self._batch_sizes[len(pairs)] += 1
        self._batch_size_metric.observe(len(pairs))
        started = time.perf_counter()
        try:
            return await self.backend.score_pairs_async(pairs)
        finally:
            self.busy_s += time.perf_counter() - started
            self.reporter.report(self.stats())

    async def _score_many(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return list(await asyncio.gather(*(self.score_pair(p) for p in pairs)))

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        long_documents: str | None = None,
    ) -> list[Scored]:
        """Scored indices into ``documents``, best first, through the shared batches."""
        self.in_flight += 1
        try:
            return await self.backend.rerank_via(
                self._score_many, query, documents, top_n, long_documents=long_documents
            )
        finally:
            self.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        """This replica's figures: batches seen so far, by size (``{"batches": n, "pairs": n,
        "sizes": {size: count}}``), busy seconds, requests in flight, device and batch settings."""
        return {
            "device": self.backend.device,
            "torch_threads": self.torch_threads,
            "in_flight": self.in_flight,
            "busy_s": round(self.busy_s, 3),
            **self.batch_settings,
            "batches": sum(self._batch_sizes.values()),
            "pairs": sum(s * c for s, c in self._batch_sizes.items()),
            "sizes": {str(s): c for s, c in sorted(self._batch_sizes.items())},
        }

    def device(self) -> str:
        return self.backend.device

    async def check_health(self) -> None:
        """Serve's periodic health probe: fails when the model can no longer score; reports this
        replica's figures, so a replica without traffic stays counted."""
        await self.backend.health_check_async()
        self.reporter.report(self.stats())
