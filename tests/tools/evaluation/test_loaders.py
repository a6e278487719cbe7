"""Both dataset layouts and the TREC file formats, on tiny hand-made files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rerank_tools.evaluation.loaders import (
    DatasetError,
    load_beir,
    load_candidates,
    read_qrels,
    read_trec_run,
    write_trec_run,
)


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_self_contained_layout(tmp_path: Path) -> None:
    candidates = _write_jsonl(
        tmp_path / "candidates.jsonl",
        [
            {
                "qid": "1",
                "query": "q one",
                "candidates": [
                    {"docid": "a", "text": "A", "score": 3.0},
                    {"docid": "b", "text": "B", "score": 2.5},
                    {"docid": "c", "text": "C"},
                ],
            },
            {"qid": "2", "query": "q two", "candidates": [{"docid": "d", "text": "D"}]},
        ],
    )
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 a 2\n1 0 c 0\n2 0 d 1\n")
    dataset = load_candidates(candidates, qrels, top_k=2, name="tiny")
    assert dataset.name == "tiny"
    assert [q.qid for q in dataset.queries] == ["1", "2"]
    assert [(c.docid, c.text, c.score) for c in dataset.queries[0].candidates] == [
        ("a", "A", 3.0),
        ("b", "B", 2.5),
    ]
    assert dataset.queries[1].candidates[0].score is None
    assert dataset.qrels == {"1": {"a": 2, "c": 0}, "2": {"d": 1}}
    assert dataset.first_stage_run() == {"1": ["a", "b"], "2": ["d"]}
    assert dataset.pairs == 3


def test_beir_layout_with_a_run_file(tmp_path: Path) -> None:
    corpus = _write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Title one", "text": "body one"},
            {"_id": "d2", "title": "", "text": "body two"},
            {"_id": "d3", "text": "body three"},
            {"_id": "d9", "title": "never", "text": "asked for"},
        ],
    )
    queries = _write_jsonl(
        tmp_path / "queries.jsonl",
        [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}, {"_id": "q3", "text": "x"}],
    )
    (tmp_path / "qrels").mkdir()
    qrels = tmp_path / "qrels" / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\nq2\td1\t1\n")
    run = tmp_path / "bm25.run"
    # Out of order on purpose: the reader sorts by score, as trec_eval does. q3 has no qrels.
    run.write_text(
        "q1 Q0 d2 2 4.0 bm25\nq1 Q0 d1 1 5.0 bm25\nq1 Q0 d3 3 1.0 bm25\n"
        "q2 Q0 d1 1 2.0 bm25\nq3 Q0 d2 1 1.0 bm25\n"
    )
    dataset = load_beir(corpus, queries, qrels, run, top_k=2, name="beir")
    assert [q.qid for q in dataset.queries] == ["q1", "q2"]
    q1 = dataset.queries[0]
    assert q1.query == "first"
    assert [(c.docid, c.text, c.score) for c in q1.candidates] == [
        ("d1", "Title one body one", 5.0),
        ("d2", "body two", 4.0),
    ]
    assert dataset.qrels == {"q1": {"d3": 1}, "q2": {"d1": 1}}


def test_trec_run_round_trip_and_tie_order(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_trec_run(path, {"q": [("z", 1.0), ("a", 1.0), ("m", 0.5)]}, tag="t")
    assert path.read_text().splitlines()[0] == "q Q0 z 1 1.000000 t"
    # Equal scores keep their rank order.
    assert read_trec_run(path) == {"q": [("z", 1.0), ("a", 1.0), ("m", 0.5)]}
    assert read_trec_run(path, top_k=1) == {"q": [("z", 1.0)]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1 0 a\n1 0 b x\n", "relevance 'x' is not a number"),
        ("1 a\n", "expected 3 (BEIR) or 4 (TREC) columns"),
        ("", "no judgments"),
    ],
)
def test_bad_qrels_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qrels.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_qrels(path)


def test_bad_candidates_line_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"qid": "1", "query": "q", "candidates": []}\n{"qid": "2"}\n')
    qrels = tmp_path / "q.txt"
    qrels.write_text("1 0 a 1\n")
    with pytest.raises(DatasetError, match=r"c\.jsonl:2: bad candidates entry"):
        load_candidates(path, qrels)
    with pytest.raises(DatasetError, match="cannot read"):
        load_candidates(tmp_path / "absent.jsonl", qrels)
