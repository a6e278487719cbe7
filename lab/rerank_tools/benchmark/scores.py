"""Scores a target answers, checked against the same model's in-process ``CrossEncoder.predict``.

A throughput figure means something only if the server scored the pairs it was sent with the model
it was given: every target answers the same first requests of the sweep, and the check reports how
far its relevance scores are from in-process ``predict``'s (sigmoid of the logit, as the service's
``score`` and Infinity's ``relevance_score`` are) and how well each request's order agrees
(Kendall's tau-b). A half-precision server is expected to differ a little; it is reported, not failed.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from rerank_tools.agreement import kendall_tau_b
from rerank_tools.benchmark.loadgen import ClientKind, RequestSample, requester

Pair = tuple[str, str]
Reference = Callable[[Sequence[Pair]], list[float]]


def predict_reference(model: Any) -> Reference:
    """In-process relevance scores of ``model`` (a ``CrossEncoder``), one request at a time."""

    def scores(pairs: Sequence[Pair]) -> list[float]:
        return [float(s) for s in model.predict(list(pairs), show_progress_bar=False)]

    return scores


async def _served(
    url: str, client: ClientKind, samples: Sequence[RequestSample], model: str | None,
    api_key: str | None, timeout_s: float,
) -> list[list[float]]:  # fmt: skip
    async with requester(client, url, api_key, timeout_s, 1, model, None) as request:
        return [await request(sample) for sample in samples]


def check_scores(
    url: str,
    client: ClientKind,
    samples: Sequence[RequestSample],
    reference: Reference,
    *,
    target: str,
    model: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """The ``score_check`` record of ``target`` over ``samples`` (see the module docstring)."""
    served = asyncio.run(_served(url, client, samples, model, api_key, timeout_s))
    expected = [reference(sample.pairs) for sample in samples]
    answers = list(zip(served, expected, strict=True))
    diffs = [abs(a - b) for got, want in answers for a, b in zip(got, want, strict=True)]
    taus = [kendall_tau_b(got, want) for got, want in answers]
    return {
        "kind": "score_check",
        "target": target,
        "requests": len(samples),
        "pairs": len(diffs),
        "max_abs_diff": max(diffs, default=0.0),
        "mean_abs_diff": statistics.fmean(diffs) if diffs else 0.0,
        "mean_kendall_tau": statistics.fmean(taus) if taus else None,
        "min_kendall_tau": min(taus, default=None),
    }
