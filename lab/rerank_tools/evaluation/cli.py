"""``rerank-eval``: rerank a relevance dataset's first-stage candidates and score the result.

Reranks in-process (a backend of a configuration file, by default the packaged all-MiniLM-L6-v2
bi-encoder) or over HTTP (the running service). Reports nDCG@10, MRR@10 and Recall@k of the reranked
run and of the first-stage (input) order, and per-query latency. Writes ``run.trec`` and
``summary.json`` into the output directory; the last line on stdout is the summary as one JSON
object. A progress bar goes to stderr. Exit status 1 on a dataset or rerank error, 2 on bad usage.

Examples::

    rerank-eval --dataset trec-dl20 --data-dir ../shared/data
    rerank-eval --dataset scifact --backend-config serve_config.yaml --backend minilm-ce
    rerank-eval --dataset trec-dl20 --url http://127.0.0.1:8000 --model default --concurrency 4
    rerank-eval --dataset trec-dl20 --scored-run runs/dl20-batch/run.trec

``--scored-run`` judges a run reranked elsewhere (``rerank-batch --trec`` writes one) instead of
reranking: the same metrics, against the same first stage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rerank_client.client import AsyncRerankClient
from rerank_core.backends import Backend, build_backend
from rerank_core.config import BiEncoderConfig, load_config
from rerank_core.errors import RerankError
from rerank_tools.conditions import conditions
from rerank_tools.evaluation.loaders import (
    KNOWN_DATASETS,
    DatasetError,
    EvalDataset,
    load_beir,
    load_candidates,
    load_named,
    read_trec_run,
)
from rerank_tools.evaluation.report import summarize, write_outputs
from rerank_tools.evaluation.rerankers import (
    HttpReranker,
    InProcessReranker,
    QueryOutcome,
    QueryReranker,
    rerank_dataset,
)

#: Name of the default in-process backend (``BiEncoderConfig()``: the packaged MiniLM).
DEFAULT_BACKEND = "minilm-bi-encoder"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-eval",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("dataset (one of: --dataset; --candidates; --corpus)")
    data.add_argument("--dataset", choices=KNOWN_DATASETS, help="a dataset under --data-dir")
    data.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("RERANK_SHARED_DATA", "../shared/data")),
        help="folder holding the known datasets",
    )
    data.add_argument("--candidates", type=Path, help="candidates JSONL (self-contained layout)")
    data.add_argument("--qrels", type=Path, help="qrels: TREC (qid 0 docid rel) or BEIR TSV")
    data.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl")
    data.add_argument("--queries", type=Path, help="BEIR queries.jsonl")
    data.add_argument("--run", type=Path, help="TREC run file of first-stage candidates")
    data.add_argument("--top-k", type=int, default=100, help="candidates per query")
    data.add_argument("--max-queries", type=int, default=None, help="evaluate the first N only")
    grading = data.add_mutually_exclusive_group()
    grading.add_argument(
        "--graded",
        dest="graded",
        action="store_true",
        default=None,
        help="MRR/Recall count rel>=2 (default: told from the qrels' highest grade)",
    )
    grading.add_argument("--binary", dest="graded", action="store_false", help="MRR/Recall count rel>=1")

    local = parser.add_argument_group("in-process reranking (the default)")
    local.add_argument("--backend-config", type=Path, help="service configuration YAML")
    local.add_argument("--backend", help="backend name in --backend-config")

    parser.add_argument(
        "--scored-run",
        type=Path,
        help="judge this TREC run (e.g. rerank-batch's run.trec) instead of reranking",
    )

    http = parser.add_argument_group("reranking through the running service")
    http.add_argument("--url", help="service base URL, e.g. http://127.0.0.1:8000")
    http.add_argument("--model", help="route or backend name (default: the service's default)")
    http.add_argument("--api-key-env", help="environment variable holding the service API key")
    http.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")

    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="queries in flight (default: 4 over HTTP, 1 in-process)",
    )
    parser.add_argument("--recall-k", default="10,100", help="comma-separated k of Recall@k")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="default: ./runs/<dataset>-<backend>-<timestamp>/",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _load_dataset(args: argparse.Namespace, parser: argparse.ArgumentParser) -> EvalDataset:
    chosen = [bool(args.dataset), bool(args.candidates), bool(args.corpus)]
    if sum(chosen) != 1:
        parser.error("give exactly one of --dataset, --candidates (+ --qrels), --corpus (+ ...)")
    if args.dataset:
        dataset = load_named(args.dataset, args.data_dir, args.top_k)
    elif args.candidates:
        if not args.qrels:
            parser.error("--candidates needs --qrels")
        dataset = load_candidates(args.candidates, args.qrels, args.top_k)
    else:
        if not (args.queries and args.qrels and args.run):
            parser.error("--corpus needs --queries, --qrels and --run")
        dataset = load_beir(args.corpus, args.queries, args.qrels, args.run, args.top_k)
    if args.max_queries is not None:
        dataset.queries = dataset.queries[: args.max_queries]
    if not dataset.queries:
        raise DatasetError(f"dataset {dataset.name!r} has no queries to evaluate")
    return dataset


def _local_backend(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Backend:
    if args.backend_config is None:
        if args.backend:
            parser.error("--backend needs --backend-config")
        return build_backend(DEFAULT_BACKEND, BiEncoderConfig())
    config = load_config(args.backend_config)
    name = args.backend or next(iter(config.backends))
    if name not in config.backends:
        parser.error(f"--backend {name!r} is not in {args.backend_config}: {sorted(config.backends)}")
    return build_backend(name, config.backends[name])


def _api_key(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    if not args.api_key_env:
        return None
    key = os.environ.get(args.api_key_env, "").strip()
    if not key:
        parser.error(f"environment variable {args.api_key_env} is empty or unset")
    return key


async def _evaluate(
    args: argparse.Namespace, parser: argparse.ArgumentParser, dataset: EvalDataset
) -> tuple[str, str, list[QueryOutcome]]:
    """Rerank every query; returns (mode, backend label, outcomes)."""
    progress = not args.no_progress
    reranker: QueryReranker
    if args.scored_run:
        if args.url or args.backend_config or args.backend:
            parser.error("--scored-run judges a run: drop --url/--backend-config/--backend")
        return "scored-run", args.scored_run.stem, scored_outcomes(dataset, args.scored_run)
    if args.url:
        if args.backend_config or args.backend:
            parser.error("--url reranks through the service: drop --backend-config/--backend")
        concurrency = args.concurrency or 4
        async with AsyncRerankClient(
            args.url, _api_key(args, parser), args.timeout, max_connections=concurrency
        ) as client:
            reranker = HttpReranker(client, args.model)
            outcomes = await rerank_dataset(dataset, reranker, concurrency, progress)
        return "http", args.model or "default", outcomes
    backend = _local_backend(args, parser)
    try:
        reranker = InProcessReranker(backend)
        outcomes = await rerank_dataset(dataset, reranker, args.concurrency or 1, progress)
    finally:
        await backend.close()
    return "in-process", backend.name, outcomes


def scored_outcomes(dataset: EvalDataset, path: Path) -> list[QueryOutcome]:
    """Each dataset query's ranking as ``path`` (a TREC run) gives it; ``DatasetError`` when the
    run lacks a query or ranks a document that is not among its candidates."""
    run = read_trec_run(path)
    outcomes = []
    for query in dataset.queries:
        ranked = run.get(query.qid)
        if ranked is None:
            raise DatasetError(f"{path}: no ranking for query {query.qid!r}")
        known = {c.docid for c in query.candidates}
        stray = [docid for docid, _ in ranked if docid not in known]
        if stray:
            raise DatasetError(f"{path}: query {query.qid!r} ranks {stray[0]!r}, not one of its candidates")
        outcomes.append(QueryOutcome(query.qid, ranked, 0.0, path.stem, False, False))
    return outcomes


def _default_output_dir(dataset: str, backend: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in backend)
    return Path("runs") / f"{dataset}-{safe}-{stamp}"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Load, rerank, evaluate and write; returns the summary."""
    try:
        recall_ks = [int(k) for k in args.recall_k.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--recall-k must be comma-separated integers, not {args.recall_k!r}")
    started = time.perf_counter()
    dataset = _load_dataset(args, parser)
    mode, backend, outcomes = asyncio.run(_evaluate(args, parser, dataset))
    summary = summarize(
        dataset, outcomes, mode=mode, backend=backend, graded=args.graded, recall_ks=recall_ks
    )
    summary["top_k"] = args.top_k
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    # Where it ran, so a figure copied into docs/results keeps its conditions.
    summary["machine"] = conditions()
    out_dir = args.output_dir or _default_output_dir(dataset.name, backend)
    return write_outputs(out_dir, summary, outcomes)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rerank-eval``; the last stdout line is the summary JSON."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = run(args, parser)
    except (DatasetError, RerankError) as exc:
        print(f"rerank-eval: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    first = summary["first_stage"]
    print(
        f"{summary['dataset']} ({summary['queries']} queries, {summary['pairs']} pairs): "
        f"nDCG@10 {summary['ndcg@10']:.4f} (first stage {first['ndcg@10']:.4f}), "
        f"MRR@10 {summary['mrr@10']:.4f} (first stage {first['mrr@10']:.4f}), "
        f"p50 {summary['latency']['p50_ms']:.1f} ms/query"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
