"""rerank-batch's input readers: every layout, and every kind of bad row set aside with its line and
reason while the good queries go on (nothing dropped silently)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rerank_batch.inputs import InputError, read_input

QUERY_ROWS = [
    {"query_id": "q1", "query": "what is a cat", "candidates": [{"doc_id": "a", "text": "a cat"}, {"doc_id": "b", "text": "a dog"}]},
    {"qid": 2, "query": "rain", "candidates": [{"docid": "c", "text": "it rains", "score": 3.5}]},
]
PAIR_ROWS = [
    {"query_id": "q1", "query": "what is a cat", "doc_id": "a", "text": "a cat"},
    {"query_id": "q2", "query": "rain", "doc_id": "c", "text": "it rains"},
    {"query_id": "q1", "query": "what is a cat", "doc_id": "b", "text": "a dog"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def shape(found: Any) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [(q.query_id, q.query, [tuple(c) for c in q.candidates]) for q in found.queries]


EXPECTED = [("q1", "what is a cat", [("a", "a cat"), ("b", "a dog")]), ("2", "rain", [("c", "it rains")])]


def test_query_rows_from_jsonl_and_parquet_read_alike(tmp_path: Path) -> None:
    from_json = read_input(write_jsonl(tmp_path / "q.jsonl", QUERY_ROWS))
    second = {"query_id": "2", "query": "rain", "candidates": [{"doc_id": "c", "text": "it rains"}]}
    pq.write_table(pa.Table.from_pylist([QUERY_ROWS[0], second]), tmp_path / "q.parquet")
    from_parquet = read_input(tmp_path / "q.parquet")
    for found in (from_json, from_parquet):
        assert found.layout == "queries"
        assert shape(found) == EXPECTED
        assert found.bad == []
    assert [q.line for q in from_json.queries] == [1, 2]


def test_pair_rows_are_gathered_by_query_whatever_their_order(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(PAIR_ROWS), tmp_path / "p.parquet")
    for path in (write_jsonl(tmp_path / "p.jsonl", PAIR_ROWS), tmp_path / "p.parquet"):
        found = read_input(path)
        assert found.layout == "pairs"
        assert shape(found) == [EXPECTED[0], ("q2", "rain", [("c", "it rains")])]
        assert found.pairs == 3


def test_trec_run_with_beir_corpus_and_queries(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "a", "title": "Cats", "text": "a cat"},
        {"_id": "b", "title": "", "text": "a dog"},
    ])  # fmt: skip
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "what is a cat"}])
    run = tmp_path / "bm25.run"
    # Run order is by score (then rank), as trec_eval reads it, not by line.
    run.write_text("q1 Q0 b 2 1.5 bm25\nq1 Q0 a 1 2.5 bm25\nq1 Q0 zz 3 1.0 bm25\nqX Q0 a 1 1.0 bm25\nq1 Q0 a\n")
    found = read_input(run, tmp_path / "corpus.jsonl", tmp_path / "queries.jsonl")
    assert found.layout == "trec"
    assert shape(found) == [("q1", "what is a cat", [("a", "Cats a cat"), ("b", "a dog")])]
    assert [(b.line, b.reason) for b in found.bad] == [
        (3, f"doc id 'zz' is not in {tmp_path / 'corpus.jsonl'}"),
        (4, f"query id 'qX' is not in {tmp_path / 'queries.jsonl'}"),
        (5, "expected 6 columns (qid Q0 docid rank score tag)"),
    ]


BAD_QUERY_ROWS = [
    ("{not json", None, "not JSON"),
    ("[1, 2]", None, "not a JSON object"),
    ({"query": "x", "candidates": [{"doc_id": "a", "text": "t"}]}, None, "no query id (query_id or qid)"),
    ({"query_id": "e1", "query": 7, "candidates": [{"doc_id": "a", "text": "t"}]}, "e1", "query must be a string, is a int"),
    ({"query_id": "e2", "query": "x", "candidates": []}, "e2", "no candidates"),
    ({"query_id": "e3", "query": "x"}, "e3", "no candidates"),
    ({"query_id": "e4", "query": "x", "candidates": [{"doc_id": "a", "text": None}]}, "e4", "candidates[0]: text must be a string, is missing"),
    ({"query_id": "e5", "query": "x", "candidates": [{"text": "t"}]}, "e5", "candidates[0]: no doc id (doc_id or docid)"),
    ({"query_id": "e6", "query": "x", "candidates": [{"doc_id": "a", "text": "t"}, {"doc_id": "a", "text": "u"}]}, "e6", "candidates[1]: doc id 'a' repeats"),
    ({"query_id": "q1", "query": "x", "candidates": [{"doc_id": "a", "text": "t"}]}, "q1", "query id 'q1' repeats (first at line 1)"),
    ({"query_id": "e7", "query": "   ", "candidates": [{"doc_id": "a", "text": "t"}]}, "e7", "query is empty"),
]


@pytest.mark.parametrize(("row", "query_id", "reason"), BAD_QUERY_ROWS, ids=[r for *_, r in BAD_QUERY_ROWS])
def test_a_bad_query_row_is_set_aside_with_its_line_and_reason(
    tmp_path: Path, row: Any, query_id: str | None, reason: str
) -> None:
    found = read_input(write_jsonl(tmp_path / "in.jsonl", [QUERY_ROWS[0], row, QUERY_ROWS[1]]))
    assert shape(found) == EXPECTED
    [bad] = found.bad
    assert (bad.source, bad.line, bad.query_id) == (str(tmp_path / "in.jsonl"), 2, query_id)
    assert bad.reason.startswith(reason)


def test_bad_pair_rows_leave_their_query_with_the_good_pairs(tmp_path: Path) -> None:
    rows = [
        PAIR_ROWS[0],
        {**PAIR_ROWS[2], "text": 5},
        {**PAIR_ROWS[0], "text": "again"},
        {**PAIR_ROWS[2], "query": "another text"},
        {"query_id": "q1", "query": "what is a cat", "candidates": []},
        PAIR_ROWS[2],
    ]
    found = read_input(write_jsonl(tmp_path / "p.jsonl", rows))
    assert shape(found) == [EXPECTED[0]]
    assert [(b.line, b.reason) for b in found.bad] == [
        (2, "text must be a string, is a int"),
        (3, "doc id 'a' repeats for query id 'q1'"),
        (4, "query text differs from line 1's for query id 'q1'"),
        (5, "a query row in a file of pair rows"),
    ]


def test_files_that_cannot_be_read_stop_the_job_before_it_starts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a file"):
        read_input(tmp_path / "missing.jsonl")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="as Parquet"):
        read_input(tmp_path / "broken.parquet")
    with pytest.raises(InputError, match="both a corpus and a queries file"):
        read_input(write_jsonl(tmp_path / "in.jsonl", QUERY_ROWS), corpus=tmp_path / "c.jsonl")
