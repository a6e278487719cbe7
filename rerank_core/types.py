"""The result types shared by every backend and by the fallback chain."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

#: How documents longer than a model's input are handled: cut to the model's length, or scored by
#: their best overlapping window. The one definition the config, the wire contract and the backends use.
LongDocuments = Literal["truncate", "window"]


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


@dataclass(slots=True)
class RankedResult:
    """What a rerank produced, whatever answered."""

    results: list[Scored]
    backend: str
    fallback: bool = False
    degraded: bool = False
    skipped: list[Skip] = field(default_factory=list)


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

