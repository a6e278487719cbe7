"""The metric wiring on a run and qrels small enough to score by hand."""

from __future__ import annotations

import math

import pytest

from rerank_tools.evaluation.metrics import evaluate_run, relevance_threshold
from rerank_tools.latency import latency_summary

QRELS = {
    "q1": {"d1": 3, "d2": 1, "d3": 0},
    "q2": {"d5": 1, "d6": 2},
}
RUN = {
    "q1": ["d3", "d1", "d2"],
    "q2": ["d7", "d5", "d6"],  # d7 is unjudged
    "q9": ["d1"],  # no judgments: not evaluated
}


def test_ndcg_mrr_recall_match_the_hand_computation() -> None:
    # q1: DCG = 0/log2(2) + 3/log2(3) + 1/log2(4); ideal = 3/log2(2) + 1/log2(3).
    ndcg_q1 = (3 / math.log2(3) + 1 / 2) / (3 + 1 / math.log2(3))
    # q2: DCG = 0 + 1/log2(3) + 2/log2(4); ideal = 2 + 1/log2(3).
    ndcg_q2 = (1 / math.log2(3) + 1) / (2 + 1 / math.log2(3))
    result = evaluate_run(RUN, QRELS, rel=2, recall_ks=(2,))
    assert result["queries"] == 2
    assert result["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-9)
    # rel >= 2: q1's first is d1 at rank 2, q2's is d6 at rank 3.
    assert result["mrr@10"] == pytest.approx((1 / 2 + 1 / 3) / 2, abs=1e-9)
    # rel >= 2 in the top 2: q1 finds d1 (1 of 1), q2 misses d6 (0 of 1).
    assert result["recall@2"] == pytest.approx(0.5, abs=1e-9)


def test_binary_threshold_counts_grade_one() -> None:
    result = evaluate_run(RUN, QRELS, rel=1, recall_ks=(2,))
    # rel >= 1: q1's first is d1 at rank 2, q2's is d5 at rank 2.
    assert result["mrr@10"] == pytest.approx(0.5, abs=1e-9)
    # q1: d1 of {d1, d2}; q2: d5 of {d5, d6}.
    assert result["recall@2"] == pytest.approx(0.5, abs=1e-9)


def test_order_decides_not_docids_on_ties() -> None:
    # Given order puts the relevant document first; a docid tie-break would put "a" first.
    result = evaluate_run({"q": ["z", "a"]}, {"q": {"z": 1, "a": 0}}, rel=1)
    assert result["mrr@10"] == 1.0
    assert result["ndcg@10"] == 1.0


def test_relevance_threshold_from_grades_or_flag() -> None:
    assert relevance_threshold(QRELS) == 2
    assert relevance_threshold({"q": {"a": 1, "b": 0}}) == 1
    assert relevance_threshold(QRELS, graded=False) == 1
    assert relevance_threshold({"q": {"a": 1}}, graded=True) == 2


def test_no_judged_query_gives_zeros() -> None:
    result = evaluate_run({"x": ["a"]}, QRELS, rel=1)
    assert result["queries"] == 0 and result["ndcg@10"] == 0.0


def test_latency_summary_in_milliseconds() -> None:
    summary = latency_summary([0.010, 0.020, 0.030, 0.040], quantiles=(50, 95))
    assert summary["mean_ms"] == pytest.approx(25.0)
    assert summary["p50_ms"] == pytest.approx(25.0)
    assert summary["p95_ms"] == pytest.approx(38.5)
    assert latency_summary([], quantiles=(50, 95)) == {"mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0}
