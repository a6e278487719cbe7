"""Latency summaries shared by the tools (eval, load bench, soak, GPU check)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_summary(seconds: Sequence[float], quantiles: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """Mean and the given percentiles of latencies in seconds, in milliseconds (``mean_ms``,
    ``p50_ms``, ...); zeros when there are none."""
    if not seconds:
        return {"mean_ms": 0.0, **{f"p{q}_ms": 0.0 for q in quantiles}}
    ms = np.asarray(seconds, dtype=float) * 1000.0
    values = np.percentile(ms, list(quantiles))
    summary = {"mean_ms": float(ms.mean())}
    summary.update({f"p{q}_ms": float(v) for q, v in zip(quantiles, values, strict=True)})
    return summary
