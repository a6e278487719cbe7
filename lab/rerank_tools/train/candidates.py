"""``rerank-candidates``: a candidates file for a query log, from a corpus and a bi-encoder.

A team that wants a reranker tuned to its domain usually has many queries (a query log) and
judgments for few of them. ``rerank-train --unjudged-candidates`` lets the distillation stage learn
the teacher's order on every logged query, which needs each query's first-stage candidates. This
command finds them where no first-stage run exists: every corpus document and every query is
embedded by the bi-encoder (by default the packaged all-MiniLM-L6-v2), and each query's ``top_k``
nearest documents by cosine are written in the self-contained candidates layout that
``rerank-eval`` and ``rerank-train`` read.

Queries that are judged in ``--exclude-qrels`` (a test split) are left out, so that a later
evaluation on them stays honest.

Example (the SciFact queries outside its test split)::

    rerank-candidates --corpus ../shared/data/scifact/corpus.jsonl \\
        --queries ../shared/data/scifact/queries.jsonl \\
        --exclude-qrels ../shared/data/scifact/qrels/test.tsv --output scifact-log.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rerank_core.backends.bi_encoder import resolve_model_source
from rerank_core.config import PACKAGED_MINILM
from rerank_core.errors import RerankError
from rerank_tools.evaluation.loaders import DatasetError, read_beir_corpus, read_beir_queries, read_qrels
from rerank_tools.train.teacher import bi_encoder_embedder


def nearest_candidates(
    corpus: dict[str, str],
    queries: dict[str, str],
    source: str,
    top_k: int,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, object]]:
    """Each query's ``top_k`` nearest corpus documents by the cosine of the embeddings of the
    sentence-transformers model at ``source``, best first, as candidates-file entries."""
    import torch

    embed = bi_encoder_embedder(source, device, progress)
    docids = list(corpus)
    documents = embed([corpus[d] for d in docids])
    qids = list(queries)
    entries = []
    for start in range(0, len(qids), 256):
        chunk = qids[start : start + 256]
        scores = embed([queries[q] for q in chunk]) @ documents.T
        best = torch.topk(scores, k=min(top_k, len(docids)), dim=1)
        for qid, values, rows in zip(chunk, best.values.tolist(), best.indices.tolist(), strict=True):
            candidates = [
                {"docid": docids[row], "text": corpus[docids[row]], "score": round(value, 6)}
                for value, row in zip(values, rows, strict=True)
            ]
            entries.append({"qid": qid, "query": queries[qid], "candidates": candidates})
    return entries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-candidates",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--corpus", type=Path, required=True, help="BEIR corpus.jsonl (_id, title, text)")
    parser.add_argument("--queries", type=Path, required=True, help="BEIR queries.jsonl (_id, text)")
    parser.add_argument(
        "--exclude-qrels", type=Path, action="append", default=[], help="leave out the queries judged here"
    )
    parser.add_argument("--output", type=Path, required=True, help="candidates JSONL to write")
    parser.add_argument("--top-k", type=int, default=30, help="candidates per query")
    parser.add_argument("--model", default=PACKAGED_MINILM, help="bi-encoder directory or id")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rerank-candidates``; exit 1 on a data or model error, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    try:
        corpus = read_beir_corpus(args.corpus)
        queries = read_beir_queries(args.queries)
        excluded = {qid for path in args.exclude_qrels for qid in read_qrels(path)}
        queries = {qid: text for qid, text in queries.items() if qid not in excluded}
        if not corpus or not queries:
            raise DatasetError(f"nothing to do: {len(corpus)} documents, {len(queries)} queries left")
        entries = nearest_candidates(
            corpus,
            queries,
            resolve_model_source("model", args.model),
            args.top_k,
            args.device,
            not args.no_progress,
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry) + "\n")
    except (DatasetError, RerankError, OSError) as exc:
        print(f"rerank-candidates: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{len(entries)} queries ({len(excluded)} excluded), {args.top_k} candidates each, "
        f"from {len(corpus)} documents: {args.output}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
