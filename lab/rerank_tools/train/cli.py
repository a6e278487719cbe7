"""``rerank-train``: train a cross-encoder on your own relevance judgments.

Reads the layouts ``rerank-eval`` reads (candidates JSONL + TREC qrels, or BEIR corpus/queries/qrels
+ a TREC run of first-stage candidates), holds out a dev split of the queries, and trains in stages:

1. ``distil``: every candidate of every training query, and of every query of a query log given
   by ``--unjudged-candidates`` (plus candidates of other queries as easy negatives), labelled
   with the teacher's score (by default the packaged all-MiniLM-L6-v2 bi-encoder's cosine,
   standardised within each query), regressed with MSE. Needs no judgments, so it uses all the
   candidates. With ``--head-epochs`` it starts with that many epochs in which only the fresh
   head learns (the encoder frozen), then trains everything.
2. ``judgments``: the judged candidates with graded labels and hard negatives drawn from the
   first-stage candidates; pointwise (binary cross-entropy) or listwise (LambdaLoss).

Every ``--eval-every`` steps the dev queries are reranked and scored with ``rerank-eval``'s metrics;
the best weights are kept and a stage stops after ``--patience`` evaluations without improvement.
Writes a model directory (name it as a ``cross_encoder`` backend's ``model``) and ``report.json``
(dev nDCG@10 before and after, steps, seconds); the last stdout line is the report as JSON.

Example::

    rerank-train --candidates ../shared/data/trec-dl21/candidates.jsonl \\
        --qrels ../shared/data/trec-dl21/qrels.txt --output-dir models/my-reranker
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rerank_core.config import PACKAGED_MINILM
from rerank_core.errors import RerankError
from rerank_tools.evaluation.loaders import DatasetError, EvalDataset, load_beir, load_candidates

RECIPES = ("distil+judgments", "distil", "judgments")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-train",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("training data (--candidates + --qrels, or --corpus + ...)")
    data.add_argument("--candidates", type=Path, help="candidates JSONL (self-contained layout)")
    data.add_argument("--qrels", type=Path, required=True, help="qrels: TREC or BEIR TSV")
    data.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl")
    data.add_argument("--queries", type=Path, help="BEIR queries.jsonl")
    data.add_argument("--run", type=Path, help="TREC run file of first-stage candidates")
    data.add_argument(
        "--unjudged-candidates",
        type=Path,
        action="append",
        default=[],
        help="candidates JSONL of queries without judgments (a query log; see rerank-candidates): "
        "the distil stage learns the teacher's order on them too (repeatable)",
    )
    data.add_argument("--top-k", type=int, default=100, help="first-stage candidates per query")
    data.add_argument("--dev-fraction", type=float, default=0.2, help="share of queries held out")
    data.add_argument("--dev-top-k", type=int, default=30, help="dev: rerank each query's first N candidates")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=PACKAGED_MINILM,
        help="start: an encoder or cross-encoder directory or Hugging Face id",
    )
    model.add_argument("--output-dir", type=Path, required=True, help="where the model is written")
    model.add_argument("--max-length", type=int, default=256, help="tokens per (query, passage)")

    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--recipe", choices=RECIPES, default="distil+judgments")
    recipe.add_argument(
        "--teacher", default=PACKAGED_MINILM, help="bi-encoder whose scores the distil stage learns"
    )
    recipe.add_argument("--teacher-scale", type=float, default=10.0, help="scaled labels: cosine multiplier")
    recipe.add_argument(
        "--teacher-labels",
        choices=("per-query", "scaled"),
        default="per-query",
        help="distil targets: the scaled cosine, or standardised within each query",
    )
    recipe.add_argument(
        "--other-negatives", type=int, default=20, help="distil: other queries' candidates per query"
    )
    recipe.add_argument(
        "--distil-loss",
        choices=("pointwise", "listwise"),
        default="pointwise",
        help="distil stage: MSE on each pair's label, or ListNet over each query's list "
        "(--list-size documents a step)",
    )
    recipe.add_argument(
        "--head-epochs",
        type=float,
        default=0.0,
        help="distil stage: first train only the fresh head for this many epochs, encoder frozen",
    )
    recipe.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of --head-epochs")
    recipe.add_argument("--distil-epochs", type=float, default=3.0)
    recipe.add_argument("--distil-lr", type=float, default=5e-5)
    recipe.add_argument(
        "--loss",
        choices=("pointwise", "listwise"),
        default="pointwise",
        help="judgments stage: binary cross-entropy or LambdaLoss",
    )
    recipe.add_argument("--negatives-per-positive", type=int, default=3)
    recipe.add_argument("--judgment-epochs", type=float, default=2.0)
    recipe.add_argument("--judgment-lr", type=float, default=2e-5)
    recipe.add_argument("--list-size", type=int, default=16, help="listwise losses: documents per list")

    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--max-steps", type=int, default=100_000, help="optimizer steps, all stages")
    run.add_argument("--max-minutes", type=float, default=15.0, help="wall clock, all stages")
    run.add_argument("--eval-every", type=int, default=50, help="steps between dev evaluations")
    run.add_argument("--patience", type=int, default=4, help="dev evaluations without improvement")
    run.add_argument("--seed", type=int, default=13)
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    run.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    run.add_argument(
        "--bf16",
        action="store_true",
        help="train under bfloat16 autocast (fast on CPUs with AMX or AVX512-BF16, and on GPUs "
        "that have it); the model is saved in float32",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return parser


def load_dataset(args: argparse.Namespace, parser: argparse.ArgumentParser) -> EvalDataset:
    """The training dataset in either layout ``rerank-eval`` reads."""
    if bool(args.candidates) == bool(args.corpus):
        parser.error("give exactly one of --candidates or --corpus (+ --queries, --run)")
    if args.candidates:
        return load_candidates(args.candidates, args.qrels, args.top_k)
    if not (args.queries and args.run):
        parser.error("--corpus needs --queries and --run")
    return load_beir(args.corpus, args.queries, args.qrels, args.run, args.top_k)


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not 0 < args.dev_fraction < 1:
        parser.error("--dev-fraction must be between 0 and 1")
    for name in (
        "top_k",
        "dev_top_k",
        "batch_size",
        "max_steps",
        "eval_every",
        "patience",
        "list_size",
        "max_length",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.unjudged_candidates and args.recipe == "judgments":
        parser.error("--unjudged-candidates feed the distil stage, which the 'judgments' recipe has not")
    if args.head_epochs < 0 or (args.head_epochs > 0 and args.recipe == "judgments"):
        parser.error("--head-epochs: at least 0, and only with a recipe that has the distil stage")
    if args.max_minutes <= 0:
        parser.error("--max-minutes must be positive")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rerank-train``; exit 1 on a data or model error, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    try:
        dataset = load_dataset(args, parser)
        from rerank_tools.train.pipeline import train

        report = train(dataset, args)
    except (DatasetError, RerankError, OSError, ValueError) as exc:
        print(f"rerank-train: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"dev nDCG@10 {report['dev_ndcg@10_before']:.4f} -> {report['dev_ndcg@10_after']:.4f} "
        f"in {report['steps']} steps, {report['seconds']:.0f} s; model in {report['output_dir']}",
        file=sys.stderr,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
