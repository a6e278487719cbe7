"""Goodput under overload: what the service still answers, within the deadline, when many more
clients than it can serve send at once and resend at once after each refusal (as many real
clients do, whatever ``Retry-After`` says), as a share of what it answers unloaded.

The same requests go first to ``base_concurrency`` clients that honour ``Retry-After`` (the
unloaded rate), then to ``clients`` clients that resend at once. Goodput counts only answers that
came within ``deadline_s``: an answer past it is work the client had already given up on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rerank_tools.benchmark.loadgen import CellResult, RequestSample, run_cell


@dataclass(frozen=True, slots=True)
class OverloadResult:
    """The unloaded and the overloaded cell, and goodput as a share of the unloaded rate."""

    unloaded: CellResult
    overloaded: CellResult
    deadline_s: float

    @property
    def goodput_pairs_per_s(self) -> float:
        """Pairs/s of the overloaded cell's answers that came within the deadline."""
        o = self.overloaded
        return (o.requests - o.late) * o.docs_per_request / o.duration_s

    @property
    def goodput_share(self) -> float:
        """Goodput over the unloaded rate (1.0: overload costs nothing)."""
        return self.goodput_pairs_per_s / self.unloaded.pairs_per_s if self.unloaded.pairs_per_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        o = self.overloaded
        return {
            "kind": "overload",
            "docs_per_request": o.docs_per_request,
            "clients": o.concurrency,
            "unloaded_concurrency": self.unloaded.concurrency,
            "deadline_s": self.deadline_s,
            "unloaded_pairs_per_s": self.unloaded.pairs_per_s,
            "goodput_pairs_per_s": self.goodput_pairs_per_s,
            "goodput_share": self.goodput_share,
            "answered": o.requests,
            "answered_late": o.late,
            "refused": o.error_types.get("rate_limited", 0),
            "client_timeouts": o.client_timeouts,
            "answered_p99_ms": o.p99_ms,
            "refused_max_ms": o.refused_max_ms,
            "cells": [asdict(self.unloaded), asdict(o)],
        }


def measure_overload(
    url: str,
    samples: Sequence[RequestSample],
    *,
    clients: int = 64,
    base_concurrency: int = 8,
    duration_s: float = 30.0,
    deadline_s: float = 60.0,
    timeout_s: float = 120.0,
    model: str | None = None,
    api_key: str | None = None,
) -> OverloadResult:
    """The unloaded cell, then the overloaded one, each for ``duration_s``."""
    common: dict[str, Any] = {
        "duration_s": duration_s,
        "timeout_s": timeout_s,
        "model": model,
        "api_key": api_key,
        "deadline_s": deadline_s,
    }
    unloaded = asyncio.run(
        run_cell(url, samples, base_concurrency, target="unloaded", **common)
    )
    overloaded = asyncio.run(
        run_cell(url, samples, clients, target="overloaded", refused_backoff_s=0.0, **common)
    )
    return OverloadResult(unloaded, overloaded, deadline_s)
