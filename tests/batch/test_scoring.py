"""A batch of the job is scored by the service's own engine: the same scores and order as the
engine answering each query as a request (truncated and windowed), ranks per query, and a part
written whole or not at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rerank_batch.scoring import COLUMNS, part_path, score_queries, write_part
from rerank_core.backends import LocalModelBackend, build_backend
from rerank_core.config import CrossEncoderConfig
from rerank_core.types import RankRequest
from tests.tiny_models import EXAMPLES


def queries(repeat: int = 1) -> list[dict]:
    return [
        {
            "query_id": f"q{n}",
            "query": e.query,
            "candidates": [
                [f"{n}-{i}", " ".join([t] * repeat)] for i, t in enumerate([*e.irrelevant, e.relevant])
            ],
        }
        for n, e in enumerate(EXAMPLES)
    ]


@pytest.mark.parametrize("long_documents", ["truncate", "window"])
def test_batch_scores_are_the_engines_answers_query_by_query(
    tiny_model_dir: Path, long_documents: str
) -> None:
    config = CrossEncoderConfig(
        model=str(tiny_model_dir), long_documents=long_documents, window_chars=100, window_overlap_chars=20
    )
    windowed = long_documents == "window"
    # Windowed, documents long enough that each is cut into several windows.
    texts_of = queries(repeat=8 if windowed else 1)
    assert not windowed or all(len(t) > 100 for q in texts_of for _, t in q["candidates"])
    engine = build_backend("tiny", config)
    assert isinstance(engine, LocalModelBackend)
    try:
        batch = score_queries(engine, texts_of)
        columns = batch.columns
        assert (batch.queries, batch.pairs) == (len(EXAMPLES), len(columns["doc_id"]))
        for query in texts_of:
            texts = [t for _, t in query["candidates"]]
            answer = asyncio.run(engine.answer(RankRequest(query["query"], texts)))
            rows = [i for i, q in enumerate(columns["query_id"]) if q == query["query_id"]]
            by_rank = sorted(rows, key=lambda i: columns["rank"][i])
            expected = [query["candidates"][s.index][0] for s in answer.results]
            assert [columns["doc_id"][i] for i in by_rank] == expected
            for i, scored in zip(by_rank, answer.results, strict=True):
                assert columns["score"][i] == pytest.approx(scored.score, abs=1e-5)
                assert columns["raw_score"][i] == pytest.approx(scored.raw_score, abs=1e-5)
            assert sorted(columns["rank"][i] for i in rows) == list(range(1, len(texts) + 1))
            # The tiny model ranks each example's relevant document (the last) first.
            assert windowed or columns["doc_id"][by_rank[0]] == query["candidates"][-1][0]
        assert set(columns["model"]) == {str(tiny_model_dir)}
        assert set(columns["runtime"]) == {"torch"}
    finally:
        engine.shutdown()


def test_a_part_is_renamed_into_place_whole(tmp_path: Path) -> None:
    row = dict(zip(COLUMNS, ["q", "d", 0.5, 1.5, 1, "m", "torch"], strict=True))
    columns = {name: [value] for name, value in row.items()}
    written = write_part(tmp_path, 7, columns)
    assert written == part_path(tmp_path, 7) == tmp_path / "parts" / "part-000007.parquet"
    assert [p.name for p in (tmp_path / "parts").iterdir()] == ["part-000007.parquet"]
    assert pq.read_table(written).to_pylist() == [row]
