"""The router's latency histogram covers every answer the request deadline allows."""

from __future__ import annotations

from deployments.metrics import LATENCY_BOUNDARIES
from rerank_core.config import LimitsConfig


def test_latency_buckets_reach_past_the_default_deadline() -> None:
    deadline = LimitsConfig().request_timeout_s
    assert sorted(LATENCY_BOUNDARIES) == LATENCY_BOUNDARIES
    assert deadline in LATENCY_BOUNDARIES and LATENCY_BOUNDARIES[-1] > deadline
