"""A cross-encoder's two stages: ``prepare`` tokenizes each pair once and cuts padded batches under
the budgets, ``forward`` gives the same raw scores as sentence-transformers' own ``predict``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.config import CrossEncoderConfig

PAIRS = [("purring cat", "the cat sat on the mat " * n) for n in range(1, 25)] + [("dog", "bark")]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> CrossEncoderBackend:
    config = CrossEncoderConfig(
        model=str(tiny_model_dir), device="cpu", batch_size=4, max_tokens_per_batch=256
    )
    return CrossEncoderBackend("tiny", config)


def test_prepare_cuts_padded_batches_under_both_budgets(backend: CrossEncoderBackend) -> None:
    prepared = backend.prepare(PAIRS)
    assert prepared.pairs == len(PAIRS)
    assert sorted(i for batch, _ in prepared.batches for i in batch) == list(range(len(PAIRS)))
    widths = []
    for batch, features in prepared.batches:
        rows, width = features["input_ids"].shape
        assert rows == len(batch) <= 4
        assert rows == 1 or rows * width <= 256
        widths.append(width)
    assert widths == sorted(widths, reverse=True), "longest first, so padding stays small"


def test_forward_matches_predict(backend: CrossEncoderBackend) -> None:
    import torch

    expected = backend.model.predict(PAIRS, activation_fn=torch.nn.Identity(), batch_size=64)
    raw = backend.forward(backend.prepare(PAIRS))
    assert raw == pytest.approx([float(x) for x in expected], abs=1e-5)
    assert asyncio.run(backend.score_pairs_timed(PAIRS)).raw == pytest.approx(raw, abs=1e-6)


def test_no_pairs(backend: CrossEncoderBackend) -> None:
    assert backend.prepare([]).batches == [] and backend.score_pairs([]) == []
