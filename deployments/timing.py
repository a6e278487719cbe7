"""Where a request's time went, returned in every rerank answer's headers (as TEI does), so a
caller can tell waiting from compute.

The model deployment measures its part of a request (``ModelTiming``); the router adds it up over
the attempts of the request's chain (``RequestTiming``, one per request, reached through a context
variable so the chain's ``Backend`` interface stays as it is) and writes the headers.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from rerank_core.types import Scored


@dataclass
class ModelTiming:
    """A model replica's part of one request: seconds before its first batch started, seconds from
    then until its last batch ended (tokenizing and forward passes), pairs the model scored, and
    pairs answered from the score cache."""

    queue_s: float = 0.0
    model_s: float = 0.0
    pairs: int = 0
    cached: int = 0


@dataclass
class ModelAnswer:
    """What the model deployment's ``rerank`` returns: the ranking and its timing."""

    scored: list[Scored]
    timing: ModelTiming


@dataclass
class RequestTiming:
    """One request's model time, summed over the attempts that reached a local model."""

    models: list[ModelTiming] = field(default_factory=list)

    def headers(self, total_s: float) -> dict[str, str]:
        """``X-Total-Time``, ``X-Queue-Time`` and ``X-Inference-Time`` in milliseconds (the
        router's time for the request; waiting for model batches; in them), ``X-Pairs`` (pairs a
        model scored) and ``X-Cached-Pairs`` (pairs answered from a score cache)."""
        return {
            "X-Total-Time": f"{total_s * 1000:.1f}",
            "X-Queue-Time": f"{sum(t.queue_s for t in self.models) * 1000:.1f}",
            "X-Inference-Time": f"{sum(t.model_s for t in self.models) * 1000:.1f}",
            "X-Pairs": str(sum(t.pairs for t in self.models)),
            "X-Cached-Pairs": str(sum(t.cached for t in self.models)),
        }


#: The timing of the request being answered (set by the router, filled by ``DeploymentBackend``).
CURRENT: ContextVar[RequestTiming | None] = ContextVar("rerank_request_timing", default=None)


def start_request() -> RequestTiming:
    """A new request's timing, made current for the tasks it runs (the router calls this; the
    context variable itself stays in this module, which Ray imports rather than pickles)."""
    timing = RequestTiming()
    CURRENT.set(timing)
    return timing


def record_model(timing: ModelTiming) -> None:
    """Add a model's timing to the current request's, if a request is being timed."""
    current = CURRENT.get()
    if current is not None:
        current.models.append(timing)
