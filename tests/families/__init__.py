"""Tiny random rerankers of every family the service supports, built offline in seconds, for
tests that check a family's scores against its reference implementation.

Each family is the architecture of a real reranker (``Family.stands_for``) at a toy size, with a
tokenizer built the way the real one is: the same ``transformers`` tokenizer class (which builds
the real normalizer, pre-tokenizer, special tokens and pair template) over a vocabulary trained
with ``tokenizers`` on ``texts.corpus()``, so token type ids are returned exactly where the real
tokenizer returns them. Weights are random (seeded); the tests compare implementations, not
relevance, so ``initializer_range`` is large enough that a query's documents get well separated
scores. ``QUERIES`` holds TREC-like queries and passages, one of them longer than the models take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.families.models import (
    build_bert,
    build_deberta_v2,
    build_electra,
    build_gemma,
    build_modernbert,
    build_qwen3,
    build_xlm_roberta,
)
from tests.families.texts import PAIRS, QUERIES, order, per_query
from tests.families.tokenizer_builds import CAUSAL_MAX_POSITIONS, MAX_LENGTH

__all__ = [
    "CAUSAL_LMS",
    "CAUSAL_MAX_POSITIONS",
    "CROSS_ENCODERS",
    "FAMILIES",
    "MAX_LENGTH",
    "PAIRS",
    "QUERIES",
    "Family",
    "build_family",
    "order",
    "per_query",
]


@dataclass(frozen=True)
class Family:
    """A reranker family: how to build its tiny model, which real model it stands for, and how
    the service is configured for it (``backend``: the backend entry less ``model``)."""

    name: str
    stands_for: str
    build: Callable[[Path], None]
    backend: dict[str, Any] = field(default_factory=lambda: {"type": "cross_encoder"})

    @property
    def causal(self) -> bool:
        """Whether this is a yes/no causal LM (scored by prompt) rather than a cross-encoder."""
        return self.backend["type"] == "causal_lm"


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bert", "cross-encoder/ms-marco-MiniLM-L6-v2", build_bert),
        Family(
            "bert-2-labels",
            "amberoad/bert-multilingual-passage-reranking-msmarco",
            lambda path: build_bert(path, num_labels=2),
        ),
        Family("electra", "cross-encoder/ms-marco-electra-base", build_electra),
        Family("xlm-roberta", "BAAI/bge-reranker-v2-m3", build_xlm_roberta),
        Family("modernbert", "Alibaba-NLP/gte-reranker-modernbert-base", build_modernbert),
        Family("deberta-v2", "mixedbread-ai/mxbai-rerank-base-v1", build_deberta_v2),
        Family(
            "qwen3",
            "Qwen/Qwen3-Reranker-0.6B",
            build_qwen3,
            {"type": "causal_lm", "preset": "qwen3-reranker", "max_length": CAUSAL_MAX_POSITIONS},
        ),
        Family(
            "gemma",
            "BAAI/bge-reranker-v2-gemma",
            build_gemma,
            {"type": "causal_lm", "preset": "bge-reranker-v2-gemma", "max_length": CAUSAL_MAX_POSITIONS},
        ),
    )
}
CROSS_ENCODERS = [f.name for f in FAMILIES.values() if not f.causal]
CAUSAL_LMS = [f.name for f in FAMILIES.values() if f.causal]


def build_family(name: str, root: Path) -> Path:
    """The tiny model of family ``name`` in ``root/name``, built there unless it already is."""
    path = root / name
    if not (path / "config.json").is_file():
        path.mkdir(parents=True, exist_ok=True)
        FAMILIES[name].build(path)
    return path
