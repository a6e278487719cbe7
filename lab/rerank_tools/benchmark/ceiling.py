"""The in-process ceiling: the same cross-encoder scoring the same pairs with
``CrossEncoder.predict`` in this process, with no HTTP, no queue and no serialization.

Pairs are sorted by length and cut into batches (so padding is small, as the service's token-capped
batching intends); the batches are then visited in a seeded random order, so a measurement cut short
by its time budget still sees short and long pairs alike. Each batch size is measured on the same
pairs; the best one is the ceiling the served throughput is compared with.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Pair = tuple[str, str]


def load_cross_encoder(model_dir: str | Path, threads: int) -> Any:
    """A ``sentence_transformers.CrossEncoder`` from a local directory, on CPU unless CUDA is
    present, with ``threads`` torch intra-op threads."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return CrossEncoder(str(model_dir), device=device, local_files_only=True)


def _predict(model: Any, pairs: Sequence[Pair], batch_size: int) -> None:
    model.predict(list(pairs), batch_size=batch_size, show_progress_bar=False)


@dataclass(frozen=True, slots=True)
class BatchMeasurement:
    """Throughput of one batch size: pairs scored, in how long, and pairs per second."""

    batch_size: int
    pairs: int
    seconds: float

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ceiling",
            "batch_size": self.batch_size,
            "pairs": self.pairs,
            "seconds": self.seconds,
            "pairs_per_s": self.pairs_per_s,
        }


def measure_batch_size(
    model: Any, pairs: Sequence[Pair], batch_size: int, max_seconds: float, seed: int = 0
) -> BatchMeasurement:
    """Score ``pairs`` at ``batch_size`` (see the module docstring), stopping after the batch that
    crosses ``max_seconds``."""
    ordered = sorted(pairs, key=lambda p: len(p[0]) + len(p[1]))
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    random.Random(seed).shuffle(batches)
    _predict(model, batches[0], batch_size)  # warm-up: first-call allocations are not the ceiling
    done = 0
    started = time.perf_counter()
    for batch in batches:
        _predict(model, batch, batch_size)
        done += len(batch)
        if time.perf_counter() - started >= max_seconds:
            break
    return BatchMeasurement(batch_size, done, time.perf_counter() - started)


def measure_ceiling(
    model: Any, pairs: Sequence[Pair], batch_sizes: Sequence[int], max_seconds_per_size: float
) -> list[BatchMeasurement]:
    """One measurement per batch size, in the order given."""
    if not pairs:
        raise ValueError("no pairs to measure the ceiling on")
    return [measure_batch_size(model, pairs, bs, max_seconds_per_size) for bs in batch_sizes]


def best(measurements: Sequence[BatchMeasurement]) -> BatchMeasurement:
    """The measurement with the highest throughput."""
    return max(measurements, key=lambda m: m.pairs_per_s)


def time_request(model: Any, pairs: Sequence[Pair], batch_size: int, repeats: int = 3) -> float:
    """Median seconds to score one request's ``pairs`` in-process (after one warm-up call)."""
    _predict(model, pairs, batch_size)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        _predict(model, pairs, batch_size)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]
