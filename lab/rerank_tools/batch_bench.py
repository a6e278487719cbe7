"""What the batch job keeps of the engine: the same batches scored in this process by the engine
alone, then by ``rerank-batch`` (its own local Ray, one actor with the same CPUs), one after the
other in one sitting; pairs/s of each, and whether the scores agree.

    python -m rerank_tools.batch_bench ../shared/data/trec-dl20/candidates.jsonl \\
        --config benchmarks/serve_bench.yaml --backend bench --num-cpus 2

Prints one JSON line (appended to ``--results`` too): the engine's pairs/s from its first batch to
its last, the job's over the same span (``working``: its actors at work) and over its whole scoring
phase (``wall``: the pool's start-up, models loaded, included), their ratios; the engine's load and
scoring against the whole ``rerank-batch`` command (``command_ratio``); the largest score
difference and the queries whose order differs. ``--resume`` also kills a second job when about
half its parts are written and starts it again, counting what was scored twice.
"""

from __future__ import annotations

import argparse
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

from rerank_batch.cli import backend_of
from rerank_batch.inputs import read_input
from rerank_batch.job import plan_batches
from rerank_batch.scoring import score_queries
from rerank_core.backends import LocalModelBackend, build_backend


def in_process(
    batches: list[list[Any]], name: str, config: Any, threads: int
) -> tuple[float, float, dict[tuple[str, str], tuple[float, int]]]:
    """The engine scoring ``batches`` one after another: seconds to load it, seconds to score, and
    every pair's (score, rank)."""
    import torch

    torch.set_num_threads(threads)
    loading = time.perf_counter()
    engine = build_backend(name, config)
    load_s = time.perf_counter() - loading
    assert isinstance(engine, LocalModelBackend)
    scores: dict[tuple[str, str], tuple[float, int]] = {}
    pairs = 0
    started = time.perf_counter()
    for batch in batches:
        scored = score_queries(engine, [q.to_json() for q in batch])
        pairs += scored.pairs
        c = scored.columns
        for qid, doc, score, rank in zip(c["query_id"], c["doc_id"], c["score"], c["rank"], strict=True):
            scores[(qid, doc)] = (score, rank)
    elapsed = time.perf_counter() - started
    engine.shutdown()
    return load_s, elapsed, scores


def batch_command(
    input: Path, output: Path, config: Path, backend: str, batch_pairs: int, num_cpus: float
) -> list[str]:
    """``rerank-batch`` as this interpreter runs it, one actor of ``num_cpus`` by default."""
    return [
        sys.executable, "-m", "rerank_batch.cli", str(input), "--output", str(output),
        "--config", str(config), "--backend", backend, "--num-cpus", f"{num_cpus:g}",
        "--batch-pairs", str(batch_pairs), "--no-progress",
    ]  # fmt: skip


def run_batch_command(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``rerank-batch``; its summary (``RuntimeError`` with its stderr when it failed)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"rerank-batch failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_rows(output: Path) -> dict[tuple[str, str], tuple[float, int]]:
    """(query_id, doc_id) -> (score, rank) of every part of a job's output."""
    rows = pq.read_table(output / "parts", columns=["query_id", "doc_id", "score", "rank"]).to_pylist()
    return {(r["query_id"], r["doc_id"]): (r["score"], r["rank"]) for r in rows}


def job_command(args: argparse.Namespace, output: Path) -> list[str]:
    return batch_command(args.input, output, args.config, args.backend, args.batch_pairs, args.num_cpus)


def resume(args: argparse.Namespace, output: Path, batches: int) -> dict[str, Any]:
    """Kill a job (its process group) once half its parts are written, start it again; what each
    start scored."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    job = subprocess.Popen(job_command(args, output), start_new_session=True, **quiet)
    while len(list((output / "parts").glob("part-*.parquet"))) < batches // 2 and job.poll() is None:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    written = len(list((output / "parts").glob("part-*.parquet")))
    second = run_batch_command(job_command(args, output))
    rows = pq.read_table(output / "parts", columns=["query_id", "doc_id"]).to_pylist()
    return {
        "batches": batches,
        "written_before_kill": written,
        "scored_after": second["batches_scored"],
        "scored_twice": written + second["batches_scored"] - batches,
        "rows": len(rows),
        "distinct_rows": len({(r["query_id"], r["doc_id"]) for r in rows}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-pairs", type=int, default=2048)
    parser.add_argument("--job-first", action="store_true", help="the job before the engine alone")
    parser.add_argument("--resume", action="store_true", help="also measure a job killed half-way")
    parser.add_argument("--results", type=Path, help="append the JSON line here")
    args = parser.parse_args(argv)
    name, config = backend_of(args.config, args.backend)
    data = read_input(args.input)
    batches = plan_batches(data.queries, args.batch_pairs)
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        if not args.job_first:
            load_s, score_s, engine_scores = in_process(batches, name, config, args.num_cpus)
        started = time.perf_counter()
        summary = run_batch_command(job_command(args, Path(tmp) / "job"))
        command_s = time.perf_counter() - started
        if args.job_first:
            load_s, score_s, engine_scores = in_process(batches, name, config, args.num_cpus)
        scores = part_rows(Path(tmp) / "job")
        resumed = resume(args, Path(tmp) / "resumed", len(batches)) if args.resume else None
    engine_pairs_s = data.pairs / score_s
    ranks_differ = {qid for (qid, doc), (_, rank) in scores.items() if engine_scores[(qid, doc)][1] != rank}
    line = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": str(args.input),
        "config": str(args.config),
        "backend": name,
        "runtime": config.runtime,
        "cpu_dtype": getattr(config, "cpu_dtype", None),
        "num_cpus": args.num_cpus,
        "first": "job" if args.job_first else "engine",
        "batch_pairs": args.batch_pairs,
        "queries": summary["queries"],
        "pairs": summary["pairs"],
        "engine_pairs_per_s": round(engine_pairs_s, 1),
        "job_working_pairs_per_s": summary["working_pairs_per_s"],
        "job_wall_pairs_per_s": summary["pairs_per_s"],
        "working_ratio": round(summary["working_pairs_per_s"] / engine_pairs_s, 3),
        "wall_ratio": round(summary["pairs_per_s"] / engine_pairs_s, 3),
        # What a user waits for: the engine's model load and scoring, against the whole command
        # (Python and Ray started, the input read, the pool started, the output written).
        "engine_load_s": round(load_s, 2),
        "engine_s": round(load_s + score_s, 2),
        "command_s": round(command_s, 2),
        "command_ratio": round((load_s + score_s) / command_s, 3),
        "max_score_diff": max(abs(s - engine_scores[k][0]) for k, (s, _) in scores.items()),
        "queries_ordered_differently": len(ranks_differ),
        "resume": resumed,
    }
    print(json.dumps(line))
    if args.results:
        with args.results.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
