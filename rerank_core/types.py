"""The result types shared by every backend and by the fallback chain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: How documents longer than a model's input are handled: cut to the model's length, or scored by
#: their best overlapping window. The one definition the config, the wire contract and the backends use.
LongDocuments = Literal["truncate", "window"]

#: A request's traffic class, from its tenant: "interactive" (small, latency-bound: served first at
#: a local model's batch queue) or "bulk" (large, throughput-bound: what interactive work leaves,
#: refused first under overload, never starved). The one definition the config and the backends use.
Lane = Literal["interactive", "bulk"]


@dataclass(frozen=True, slots=True)
class Document:
    """One candidate passage: its text, and an optional id and metadata returned with its result."""

    text: str
    id: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    """One ranked candidate: ``index`` into the input list, ``score`` in [0, 1], and the raw score
    the source gave where it differs (a logit, a cosine, an LLM's 0-10 grade)."""

    index: int
    score: float
    raw_score: float | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """A backend the chain passed over, and why (never a secret: written from the error type)."""

    backend: str
    reason: str


@dataclass(frozen=True, slots=True)
class RankRequest:
    """One rerank request as every backend takes it: the query, the texts to rank, how many of the
    best to keep (None: all), how to treat documents longer than a local model's input (None:
    the model's configured mode; API backends leave it to the vendor) and its traffic class
    (``Lane``: where it queues at a local model's replica; API backends ignore it)."""

    query: str
    documents: Sequence[str]
    top_n: int | None = None
    long_documents: LongDocuments | None = None
    lane: Lane = "interactive"


@dataclass(slots=True)
class ModelTiming:
    """A local model's part of one request: seconds before its first batch started, seconds from
    then until its last batch ended (tokenizing and forward passes), pairs the model scored, and
    pairs answered from the score cache."""

    queue_s: float = 0.0
    model_s: float = 0.0
    pairs: int = 0
    cached: int = 0


@dataclass(slots=True)
class Answer:
    """What every backend returns for a ``RankRequest``: the ranking, best first, and, from a
    local model, where the request's time went."""

    results: list[Scored]
    timing: ModelTiming | None = None


@dataclass(slots=True)
class RankedResult:
    """What a rerank produced, whatever answered; ``timing`` is the answering local model's."""

    results: list[Scored]
    backend: str
    fallback: bool = False
    degraded: bool = False
    skipped: list[Skip] = field(default_factory=list)
    timing: ModelTiming | None = None


def sigmoid(x: float) -> float:
    """Logistic function, stable for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def clamp01(x: float) -> float:
    """Clamp into [0, 1]; NaN becomes 0."""
    if x != x:  # NaN
        return 0.0
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def top_n_of(scored: list[Scored], top_n: int | None) -> list[Scored]:
    """Sort best first (ties keep input order) and keep ``top_n`` (None: all)."""
    ranked = sorted(scored, key=lambda s: (-s.score, s.index))
    return ranked if top_n is None else ranked[:top_n]

