"""Where a request's time went, returned in every rerank answer's headers (as TEI does), so a
caller can tell waiting from compute. The answering local model measures its part
(``rerank_core.types.ModelTiming``) and it comes back inside the chain's result."""

from __future__ import annotations

from rerank_core.types import ModelTiming


def timing_headers(total_s: float, model: ModelTiming | None) -> dict[str, str]:
    """``X-Total-Time``, ``X-Queue-Time`` and ``X-Inference-Time`` in milliseconds (the router's
    time for the request; waiting for model batches; in them), ``X-Pairs`` (pairs the model
    scored) and ``X-Cached-Pairs`` (pairs answered from its score cache); the model's figures are
    0 when an API backend answered."""
    model = model or ModelTiming()
    return {
        "X-Total-Time": f"{total_s * 1000:.1f}",
        "X-Queue-Time": f"{model.queue_s * 1000:.1f}",
        "X-Inference-Time": f"{model.model_s * 1000:.1f}",
        "X-Pairs": str(model.pairs),
        "X-Cached-Pairs": str(model.cached),
    }
