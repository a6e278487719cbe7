"""The whole training run behind ``rerank-train``: split, build the stages of the recipe, train on a
shared budget, write the model directory and ``report.json``."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from rerank_core.backends.bi_encoder import resolve_model_source
from rerank_tools.evaluation.loaders import EvalDataset, EvalQuery, read_candidates
from rerank_tools.evaluation.metrics import relevance_threshold
from rerank_tools.train.data import distillation_pairs, judged_pairs, split_by_query
from rerank_tools.train.teacher import bi_encoder_teacher
from rerank_tools.train.trainer import Budget, DevTracker, Stage, run_stage


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def unjudged_queries(paths: list[Path], top_k: int) -> list[EvalQuery]:
    """The queries of ``--unjudged-candidates`` files, their qids prefixed by the file's position
    so that they can never meet the judged queries' qids."""
    return [
        EvalQuery(f"unjudged{i}:{q.qid}", q.query, q.candidates)
        for i, path in enumerate(paths)
        for q in read_candidates(path, top_k)
    ]


def _stages(
    args: argparse.Namespace,
    dataset: EvalDataset,
    train_queries: list[EvalQuery],
    unjudged: list[EvalQuery],
    device: str,
) -> list[Stage]:
    stages = []
    if args.recipe in ("distil+judgments", "distil"):
        teacher = bi_encoder_teacher(
            resolve_model_source("teacher", args.teacher), device, args.teacher_scale, not args.no_progress
        )
        pairs = distillation_pairs(
            train_queries + unjudged,
            teacher,
            args.other_negatives,
            args.seed,
            per_query=args.teacher_labels == "per-query",
        )
        loss = "listnet" if args.distil_loss == "listwise" else "mse"
        if args.head_epochs > 0:
            stages.append(Stage("head", pairs, loss, args.head_epochs, args.head_lr, head_only=True))
        stages.append(Stage("distil", pairs, loss, args.distil_epochs, args.distil_lr))
    if args.recipe in ("distil+judgments", "judgments"):
        max_grade = max(rel for docs in dataset.qrels.values() for rel in docs.values())
        pairs = judged_pairs(
            train_queries, dataset.qrels, max(1, max_grade), args.negatives_per_positive, args.seed
        )
        loss = "bce" if args.loss == "pointwise" else "lambda"
        stages.append(Stage("judgments", pairs, loss, args.judgment_epochs, args.judgment_lr))
    return stages


def train(dataset: EvalDataset, args: argparse.Namespace) -> dict[str, Any]:
    """Train per ``args`` (``rerank-train``'s options) on ``dataset``; write the best model to
    ``args.output_dir`` with ``report.json`` beside it, and return the report."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import set_seed

    started = time.monotonic()
    random.seed(args.seed)
    set_seed(args.seed)
    device = _device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    split = split_by_query(dataset, args.dev_fraction, args.seed)
    unjudged = unjudged_queries(args.unjudged_candidates, args.top_k)
    source = resolve_model_source("model", args.model)
    model = CrossEncoder(
        source, device=device, max_length=args.max_length, local_files_only=Path(source).is_dir()
    )
    if model.num_labels != 1:
        raise ValueError(
            f"{args.model!r} has {model.num_labels} labels; rerank-train trains one-label models"
        )
    dev = [EvalQuery(q.qid, q.query, q.candidates[: args.dev_top_k]) for q in split.dev]
    tracker = DevTracker(dev, dataset.qrels, relevance_threshold(dataset.qrels), args.batch_size * 4)
    # The start is a candidate too: a run that never beats it writes the start back out.
    tracker.record(model, "start", 0)
    before = tracker.best_ndcg
    prepared = time.monotonic()
    stages = _stages(args, dataset, split.train, unjudged, device)
    # The budget bounds training; labelling by the teacher is reported on its own.
    labelling_s = time.monotonic() - prepared
    budget = Budget(args.max_steps, args.max_minutes * 60.0)
    stage_reports = [
        run_stage(
            model,
            stage,
            tracker,
            budget,
            batch_size=args.batch_size,
            list_size=args.list_size,
            eval_every=args.eval_every,
            patience=args.patience,
            seed=args.seed,
            progress=not args.no_progress,
            bf16=args.bf16,
        )
        for stage in stages
    ]
    after = tracker.evaluate(model)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model.save_pretrained(str(args.output_dir))
    report = {
        "dataset": dataset.name,
        "start_model": args.model,
        "recipe": args.recipe,
        "loss": args.loss,
        "distil_loss": args.distil_loss,
        "seed": args.seed,
        "output_dir": str(args.output_dir),
        "train_queries": len(split.train),
        "unjudged_queries": len(unjudged),
        "dev_queries": [q.qid for q in split.dev],
        "dev_ndcg@10_before": round(before, 4),
        "dev_ndcg@10_after": round(after, 4),
        "best_at": tracker.best_at,
        "steps": sum(s["steps"] for s in stage_reports),
        "seconds": round(time.monotonic() - started, 1),
        "labelling_seconds": round(labelling_s, 1),
        "dev_top_k": args.dev_top_k,
        "stages": stage_reports,
        "dev_history": tracker.history,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "bf16": args.bf16,
    }
    (args.output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
