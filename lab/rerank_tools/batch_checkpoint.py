"""Ray Data's own checkpointing (``ray.data.checkpoint.CheckpointConfig``) tried as the batch job's
way to resume, beside the job's deterministic parts: the measurement behind docs/batch.md's choice.

    python -m rerank_tools.batch_checkpoint ../shared/data/trec-dl20/candidates.jsonl \\
        --config benchmarks/serve_bench.yaml --backend bench

Each trial runs ``read_json -> map_batches (the engine, in an actor) -> write_parquet`` with a
checkpoint keyed by the query id, in a subprocess killed once about half the queries are scored,
then the same again to the end; ``--blocks N`` repartitions the input into N blocks after the read
(without it a one-file input is one block). Prints one JSON line a trial: the output's rows and
distinct pairs against the input's, what each start scored and wrote, and its seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

#: Written by the scoring actor once per query scored, so the parent knows when half are done.
PROGRESS_FILE = "scored.log"


class CheckpointedScorer:
    """Scores a batch of query rows (``qid``, ``query``, ``candidates``) with the service's engine;
    one output row a pair, carrying ``qid`` (the checkpoint's id column)."""

    def __init__(self, backend: str, config: Any, progress: str) -> None:
        from rerank_core.backends import build_backend

        self.engine = build_backend(backend, config)
        self.progress = Path(progress)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from rerank_batch.scoring import score_queries

        queries = [
            {"query_id": qid, "query": query, "candidates": [[c["docid"], c["text"]] for c in candidates]}
            for qid, query, candidates in zip(batch["qid"], batch["query"], batch["candidates"], strict=True)
        ]
        columns = score_queries(self.engine, queries).columns
        with self.progress.open("a") as handle:
            handle.write("".join(f"{q['query_id']}\n" for q in queries))
        return {"qid": columns["query_id"], "docid": columns["doc_id"], "score": columns["score"]}


def run_pipeline(args: argparse.Namespace) -> None:
    """The pipeline itself (in the subprocess)."""
    import ray
    from ray.data.checkpoint import CheckpointConfig

    from rerank_batch.cli import backend_of

    name, config = backend_of(args.config, args.backend)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.checkpoint_config = CheckpointConfig(
        id_column="qid", checkpoint_path=str(args.work / "checkpoint"), delete_checkpoint_on_success=False
    )
    dataset = ray.data.read_json(str(args.input))
    if args.blocks:
        dataset = dataset.repartition(args.blocks)
    dataset.map_batches(
        CheckpointedScorer,
        fn_constructor_kwargs={"backend": name, "config": config, "progress": str(args.work / PROGRESS_FILE)},
        batch_size=args.queries_per_batch,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=1),
        num_cpus=args.num_cpus,
    ).write_parquet(str(args.work / "out"))
    ray.shutdown()


def scored(work: Path) -> int:
    log = work / PROGRESS_FILE
    return len(log.read_text().splitlines()) if log.is_file() else 0


def trial(argv: list[str], args: argparse.Namespace, queries: int, pairs: int) -> dict[str, Any]:
    """One job killed half-way and started again."""
    work = Path(tempfile.mkdtemp(prefix="ckpt-"))
    command = [sys.executable, "-m", "rerank_tools.batch_checkpoint", *argv, "--pipeline", str(work)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = time.perf_counter()
    job = subprocess.Popen(command, start_new_session=True, **quiet)
    while scored(work) < queries // 2 and job.poll() is None and time.perf_counter() - started < 600:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    first_s = time.perf_counter() - started
    first_scored = scored(work)
    out = work / "out"
    files_after_kill = len(list(out.glob("*.parquet"))) if out.is_dir() else 0
    started = time.perf_counter()
    second = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, stderr = second.communicate(timeout=900)
    finally:
        # Its local Ray too: one process group, stopped by its id whatever happened.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(second.pid, signal.SIGKILL)
    second_s = time.perf_counter() - started
    rows = pq.read_table(out).to_pylist() if out.is_dir() else []
    return {
        "blocks": args.blocks,
        "queries": queries,
        "pairs": pairs,
        "first_start": {
            "seconds": round(first_s, 1),
            "queries_scored": first_scored,
            "files": files_after_kill,
        },
        "second_start": {
            "seconds": round(second_s, 1),
            "queries_scored": scored(work) - first_scored,
            "exit": second.returncode,
        },
        "rows": len(rows),
        "distinct_pairs": len({(r["qid"], r["docid"]) for r in rows}),
        "error": stderr[-500:] if second.returncode else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--queries-per-batch", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=0, help="repartition into N blocks after the read")
    # One CPU less than the machine's: the read and write tasks need one beside the actor.
    parser.add_argument("--num-cpus", type=float, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--pipeline", type=Path, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.pipeline:
        args.work = args.pipeline
        run_pipeline(args)
        return 0
    rows = [json.loads(line) for line in args.input.read_text().splitlines() if line.strip()]
    print(json.dumps(trial(argv, args, len(rows), sum(len(r["candidates"]) for r in rows))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
