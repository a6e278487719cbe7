"""Serving must not change scores: the same queries reranked in-process and through the service
give the same order and the same scores (real TREC DL 2020 passages, the packaged bi-encoder)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rerank_client.client import AsyncRerankClient
from rerank_core.backends import build_backend
from rerank_core.config import BiEncoderConfig
from rerank_tools.evaluation.loaders import load_named
from rerank_tools.evaluation.rerankers import HttpReranker, InProcessReranker, rerank_dataset
from tests.serving.conftest import ServedApp

pytestmark = pytest.mark.serve


async def test_service_and_in_process_rank_identically(app: ServedApp, shared_data: Path) -> None:
    dataset = load_named("trec-dl20", shared_data, top_k=40)
    dataset = replace(dataset, queries=dataset.queries[:4])
    local = await rerank_dataset(
        dataset, InProcessReranker(build_backend("minilm", BiEncoderConfig())), progress=False
    )
    async with AsyncRerankClient(app.url) as client:
        served = await rerank_dataset(
            dataset, HttpReranker(client, model="minilm"), concurrency=4, progress=False
        )
    for mine, theirs in zip(local, served, strict=True):
        assert theirs.backend == "minilm" and not theirs.fallback
        assert [d for d, _ in mine.ranked] == [d for d, _ in theirs.ranked], mine.qid
        for (_, a), (_, b) in zip(mine.ranked, theirs.ranked, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
