"""The runtime sweep: in-process throughput of the same cross-encoder in each runtime, on the same
requests, with torch fp32 measured in the same run as the baseline of every ratio.

Each runtime is a ``CrossEncoderBackend`` (its configured runtime and quantization, the default
token-budget batching) scoring whole requests with ``score_pairs``, as a model replica does. The
runtimes take turns request by request (round-robin), so a neighbour's load on a shared machine
falls on all of them alike instead of on whichever ran during it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.config import CrossEncoderConfig

Pair = tuple[str, str]


class Variant(NamedTuple):
    """A local model's runtime settings, as its configuration names them."""

    runtime: str
    quantization: str = "none"
    cpu_dtype: str = "float32"

    def config(self) -> dict[str, str]:
        return self._asdict()


#: Labels ``--runtimes`` (here and in ``rerank-agreement``) accept: runtime, runtime-int8,
#: openvino-int8-static, or runtime-bf16 (``cpu_dtype: bfloat16``).
RUNTIME_LABELS = {
    "torch": Variant("torch"),
    "torch-bf16": Variant("torch", cpu_dtype="bfloat16"),
    "onnx": Variant("onnx"),
    "onnx-int8": Variant("onnx", "int8"),
    "openvino": Variant("openvino"),
    "openvino-bf16": Variant("openvino", cpu_dtype="bfloat16"),
    "openvino-int8": Variant("openvino", "int8"),
    "openvino-int8-static": Variant("openvino", "int8-static"),
}


def runtime_labels(text: str) -> list[str]:
    """``--runtimes``: comma-separated labels of ``RUNTIME_LABELS``; torch is always measured."""
    labels = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in labels if v not in RUNTIME_LABELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown runtime {', '.join(unknown)}; known: {', '.join(RUNTIME_LABELS)}"
        )
    return ["torch", *(v for v in dict.fromkeys(labels) if v != "torch")]


@dataclass(slots=True)
class RuntimeMeasurement:
    """One runtime's requests: pairs scored and the seconds each request took."""

    label: str
    request_seconds: list[float] = field(default_factory=list)
    pairs: int = 0

    @property
    def seconds(self) -> float:
        return sum(self.request_seconds)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self, baseline: RuntimeMeasurement) -> dict[str, Any]:
        return {
            "kind": "runtime",
            "label": self.label,
            **RUNTIME_LABELS[self.label].config(),
            "requests": len(self.request_seconds),
            "pairs": self.pairs,
            "seconds": self.seconds,
            "pairs_per_s": self.pairs_per_s,
            "request_p50_ms": statistics.median(self.request_seconds) * 1000,
            "vs_torch": self.pairs_per_s / baseline.pairs_per_s if baseline.pairs_per_s else None,
        }


def load_runtimes(
    model_dir: Path, labels: Sequence[str], export_cache_dir: Path | None
) -> dict[str, CrossEncoderBackend]:
    """One backend per label, exports built (or found in the cache) before anything is timed."""
    cache = {"export_cache_dir": str(export_cache_dir)} if export_cache_dir else {}
    backends = {}
    for label in labels:
        config = CrossEncoderConfig(model=str(model_dir), **RUNTIME_LABELS[label].config(), **cache)
        backends[label] = CrossEncoderBackend(f"bench-{label}", config)
    return backends


def measure_runtimes(
    backends: dict[str, CrossEncoderBackend], requests: Sequence[Sequence[Pair]], max_seconds: float
) -> dict[str, RuntimeMeasurement]:
    """Round-robin over ``requests`` (one warm-up request each first), stopping after the round
    that crosses ``max_seconds``; every runtime scores the same requests."""
    if not requests:
        raise ValueError("no requests to measure the runtimes on")
    for backend in backends.values():
        backend.score_pairs(list(requests[0]))
    results = {label: RuntimeMeasurement(label) for label in backends}
    started = time.perf_counter()
    for request in requests:
        for label, backend in backends.items():
            t0 = time.perf_counter()
            backend.score_pairs(list(request))
            results[label].request_seconds.append(time.perf_counter() - t0)
            results[label].pairs += len(request)
        if time.perf_counter() - started >= max_seconds:
            break
    return results
