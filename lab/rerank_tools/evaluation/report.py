"""The outcome of an evaluation: the summary (metrics of the reranked and the first-stage order,
latency, counts) and the files written (``run.trec``, ``summary.json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank_tools.evaluation.loaders import EvalDataset, write_trec_run
from rerank_tools.evaluation.metrics import (
    DEFAULT_RECALL_KS,
    evaluate_run,
    relevance_threshold,
)
from rerank_tools.evaluation.rerankers import QueryOutcome
from rerank_tools.latency import latency_summary


def summarize(
    dataset: EvalDataset,
    outcomes: Sequence[QueryOutcome],
    *,
    mode: str,
    backend: str,
    graded: bool | None = None,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
) -> dict[str, Any]:
    """Metrics of the reranked run (top level: ``ndcg@10``, ``mrr@10``, ``recall@k``, ``queries``)
    and of the first-stage order (``first_stage``), per-query latency and counts."""
    rel = relevance_threshold(dataset.qrels, graded)
    reranked = {o.qid: [docid for docid, _ in o.ranked] for o in outcomes}
    evaluated = {o.qid for o in outcomes}
    first_stage = {q: docs for q, docs in dataset.first_stage_run().items() if q in evaluated}
    return {
        "dataset": dataset.name,
        "mode": mode,
        "backend": backend,
        "answered_by": sorted({o.backend for o in outcomes}),
        **evaluate_run(reranked, dataset.qrels, rel, recall_ks),
        "first_stage": evaluate_run(first_stage, dataset.qrels, rel, recall_ks),
        "rel_threshold": rel,
        "pairs": sum(len(o.ranked) for o in outcomes),
        "fallback_queries": sum(o.fallback for o in outcomes),
        "degraded_queries": sum(o.degraded for o in outcomes),
        "latency": latency_summary([o.latency_s for o in outcomes], quantiles=(50, 95)),
    }


def write_outputs(out_dir: Path, summary: dict[str, Any], outcomes: Sequence[QueryOutcome]) -> dict[str, Any]:
    """Write ``run.trec`` (tagged with the backend) and ``summary.json`` (the summary with the
    file paths added) into ``out_dir``; returns that summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = out_dir / "run.trec"
    summary_file = out_dir / "summary.json"
    write_trec_run(run_file, {o.qid: o.ranked for o in outcomes}, tag=summary["backend"])
    summary = {**summary, "run_file": str(run_file), "summary_file": str(summary_file)}
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
