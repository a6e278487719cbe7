"""Ranking metrics through ir-measures, and latency statistics.

A run is evaluated by its order alone (``Run``: qid -> docids best first): each docid is given
the score ``len - rank``, so ties in a model's or a first stage's scores cannot be re-sorted by
docid, as trec_eval would do. MRR and Recall count a document relevant from ``rel`` up: 2 for graded
qrels (TREC DL's convention), 1 for binary ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import ir_measures
from ir_measures import Qrel, ScoredDoc

from rerank_tools.evaluation.loaders import Qrels, Run

DEFAULT_RECALL_KS = (10, 100)


def relevance_threshold(qrels: Qrels, graded: bool | None = None) -> int:
    """The lowest grade MRR and Recall count as relevant: 2 for graded qrels, 1 for binary ones.
    ``graded`` None: told from the qrels (graded when any grade exceeds 1)."""
    if graded is None:
        graded = any(rel > 1 for docs in qrels.values() for rel in docs.values())
    return 2 if graded else 1


def _measures(rel: int, recall_ks: Sequence[int]) -> dict[str, ir_measures.Measure]:
    named: dict[str, ir_measures.Measure] = {
        "ndcg@10": ir_measures.nDCG @ 10,
        "mrr@10": ir_measures.RR(rel=rel) @ 10,
    }
    for k in recall_ks:
        named[f"recall@{k}"] = ir_measures.R(rel=rel) @ k
    return named


def evaluate_run(
    run: Run, qrels: Qrels, rel: int, recall_ks: Sequence[int] = DEFAULT_RECALL_KS
) -> dict[str, float]:
    """Mean nDCG@10, MRR@10 (``RR(rel=rel)@10``) and ``recall@k`` of ``run`` over the queries it
    shares with ``qrels`` (keys ``ndcg@10``, ``mrr@10``, ``recall@10`` ...); ``queries`` says how
    many queries were evaluated."""
    judged = {qid: docs for qid, docs in run.items() if qid in qrels}
    # Only the shared queries: ir-measures would count a judged query missing from the run as 0.
    qrel_rows = [Qrel(qid, docid, grade) for qid in judged for docid, grade in qrels[qid].items()]
    scored = [
        ScoredDoc(qid, docid, float(len(docs) - rank))
        for qid, docs in judged.items()
        for rank, docid in enumerate(docs)
    ]
    named = _measures(rel, recall_ks)
    if not judged:
        return {**dict.fromkeys(named, 0.0), "queries": 0}
    values = ir_measures.calc_aggregate(list(named.values()), qrel_rows, scored)
    result: dict[str, float] = {name: float(values[measure]) for name, measure in named.items()}
    result["queries"] = len(judged)
    return result


