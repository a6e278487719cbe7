"""A batch reranking job on Ray Data: input files -> batches of whole queries -> an actor pool
holding the service's engine -> one Parquet part per batch.

Resuming is by deterministic output shards: the input is cut into batches the same way every time
(input order, whole queries, up to ``batch_pairs`` pairs), batch ``i`` is written as
``parts/part-i.parquet`` in one atomic rename, and a job started again on the same output scores
only the batches whose part is missing. So no query is written twice, none is lost, and a job
killed mid-way scores again at most the batches its actors had begun. ``job.json`` records what
the output was made from; a second job with another input, model or batch size is refused.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rerank_batch.inputs import BadRow, Input, Query, read_input
from rerank_batch.scoring import SCHEMA, part_path, score_queries, write_part
from rerank_core.config import BiEncoderConfig, CausalLMConfig, CrossEncoderConfig

LocalConfig = CrossEncoderConfig | BiEncoderConfig | CausalLMConfig
#: What ``run.trec`` is written from.
TREC_COLUMNS = ("query_id", "doc_id", "score", "rank")


class JobError(ValueError):
    """The job cannot run as asked (a bad row under ``strict``, an output of another job)."""


@dataclass(slots=True)
class BatchJob:
    """What to rerank, with which model, where to, on how many actors."""

    input: Path
    output: Path
    backend: str
    config: LocalConfig
    corpus: Path | None = None
    queries: Path | None = None
    #: Pairs a batch holds at most (whole queries: a larger query is a batch of its own).
    batch_pairs: int = 2048
    min_actors: int = 1
    max_actors: int = 1
    #: Each actor's CPUs (its torch threads) and GPUs (a fraction shares one GPU).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    strict: bool = False
    #: Also write ``run.trec``, tagged ``tag`` (default: the backend's name).
    trec: bool = False
    tag: str | None = None
    progress: bool = True
    #: Ray to run on when this process is not connected yet (default: ``RAY_ADDRESS``, else local).
    address: str | None = None


def plan_batches(queries: Sequence[Query], batch_pairs: int) -> list[list[Query]]:
    """Whole queries in input order, as many to a batch as fit in ``batch_pairs`` pairs."""
    batches: list[list[Query]] = []
    current: list[Query] = []
    size = 0
    for query in queries:
        if current and size + query.pairs > batch_pairs:
            batches.append(current)
            current, size = [], 0
        current.append(query)
        size += query.pairs
    if current:
        batches.append(current)
    return batches


class BatchScorer:
    """The pool's actor: loads the backend's engine once, then scores and writes one batch per
    row (``shard``, ``queries`` as JSON) it is given; returns what it did, one row per batch."""

    def __init__(self, backend: str, config: LocalConfig, output: str, threads: int) -> None:
        import torch

        from rerank_core.backends import LocalModelBackend, build_backend

        # The actor's CPUs are the model's threads (the ONNX and OpenVINO runtimes take torch's).
        torch.set_num_threads(threads)
        engine = build_backend(backend, config)
        assert isinstance(engine, LocalModelBackend)
        self.engine = engine
        self.output = Path(output)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import ray

        node = ray.get_runtime_context().get_node_id()
        done = []
        for shard, payload in zip(batch["shard"], batch["queries"], strict=True):
            started = time.time()
            scored = score_queries(self.engine, json.loads(payload))
            write_part(self.output, int(shard), scored.columns)
            done.append(
                {
                    "shard": int(shard),
                    "queries": scored.queries,
                    "pairs": scored.pairs,
                    "node": node,
                    "started": started,
                    "ended": time.time(),
                }
            )
        return {name: [row[name] for row in done] for name in done[0]}


def actor_env(threads: int, num_gpus: float) -> dict[str, str]:
    """An actor's threads, as a model replica's: on CPU the tokenizer runs on one thread of its own
    beside the model's ``threads``; beside a GPU the tokenizer's pool gets the actor's CPUs, so
    that tokenizing keeps up with the GPU."""
    env = {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    if num_gpus > 0:
        env |= {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": str(threads)}
    return env


def _fingerprint(job: BatchJob, layout: str, batches: int) -> dict[str, Any]:
    files = [p for p in (job.input, job.corpus, job.queries) if p is not None]
    stats = [(p, p.stat()) for p in files]
    return {
        "inputs": [
            {"path": str(p.resolve()), "bytes": s.st_size, "mtime_ns": s.st_mtime_ns} for p, s in stats
        ],
        "layout": layout,
        "backend": job.backend,
        "config": job.config.model_dump(mode="json"),
        "batch_pairs": job.batch_pairs,
        "batches": batches,
    }


def _claim_output(job: BatchJob, made_of: dict[str, Any]) -> None:
    """Record in ``job.json`` what the output is made of, or check that a resumed output was made
    of the same; ``JobError`` names the first difference."""
    manifest = job.output / "job.json"
    if manifest.is_file():
        try:
            before = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise JobError(f"{manifest} is not JSON: remove {job.output} to start again") from None
        for key in made_of:
            if before.get(key) != made_of[key]:
                raise JobError(
                    f"{job.output} holds the output of another job ({key} differs): give a new "
                    "--output, or remove that folder to start again"
                )
        return
    job.output.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(made_of, indent=2) + "\n", encoding="utf-8")


def _write_errors(output: Path, bad: Sequence[BadRow]) -> None:
    with (output / "errors.jsonl").open("w", encoding="utf-8") as handle:
        for row in bad:
            handle.write(json.dumps(row.to_json()) + "\n")


def _score(job: BatchJob, todo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score the ``todo`` batches (``shard``, ``queries`` as JSON) on the actor pool, emptying the
    list once Ray holds them; one result row per batch. Ray: the one this
    process is connected to, else the cluster at ``job.address`` or ``RAY_ADDRESS`` (set by ``ray
    job submit``), else a local one started for the job and stopped after."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        address = job.address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address or "local", include_dashboard=None if address else False)
    try:
        return _score_on_ray(job, todo)
    finally:
        if started_here:
            ray.shutdown()


def _score_on_ray(job: BatchJob, todo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = job.progress
    threads = max(1, int(job.num_cpus))
    # One batch a block: each task an actor runs is one batch, so the pool shares the work out
    # batch by batch and a killed actor had begun at most the one it was scoring.
    source = ray.data.from_items(todo, override_num_blocks=len(todo))
    todo.clear()
    dataset = source.map_batches(
        BatchScorer,
        fn_constructor_kwargs={
            "backend": job.backend,
            "config": job.config,
            "output": str(job.output),
            "threads": threads,
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=job.min_actors, max_size=job.max_actors),
        num_cpus=job.num_cpus,
        num_gpus=job.num_gpus,
        runtime_env={"env_vars": actor_env(threads, job.num_gpus)},
    )
    return dataset.take_all()


def _read_parts(output: Path, columns: list[str]) -> pa.Table:
    """``columns`` of every part written (none: an empty table)."""
    parts = output / "parts"
    if not any(parts.glob("part-*.parquet")):
        return SCHEMA.empty_table().select(columns)
    return pq.read_table(parts, columns=columns)


def write_trec(output: Path, table: pa.Table, query_ids: Sequence[str], tag: str) -> Path:
    """``run.trec`` from the parts' ``query_id, doc_id, score, rank`` (``table``): each query's
    documents by rank, queries in input order."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    columns = (table.column(name).to_pylist() for name in TREC_COLUMNS)
    for qid, doc_id, score, rank in zip(*columns, strict=True):
        rows.setdefault(qid, []).append((rank, doc_id, score))
    path = output / "run.trec"
    with path.open("w", encoding="utf-8") as handle:
        for qid in query_ids:
            for rank, doc_id, score in sorted(rows.get(qid, [])):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.8f} {tag}\n")
    return path


def run_batch(job: BatchJob) -> dict[str, Any]:
    """Run ``job``; returns the summary, also written to ``summary.json``. Ray is joined only when
    there is something to score (``_score``). Raises ``InputError`` (unreadable input) and
    ``JobError``."""
    started = time.perf_counter()
    data: Input = read_input(job.input, job.corpus, job.queries)
    if job.strict and data.bad:
        first = data.bad[0]
        raise JobError(f"{first.source}:{first.line}: {first.reason} (--strict stops at a bad row)")
    batches = plan_batches(data.queries, job.batch_pairs)
    _claim_output(job, _fingerprint(job, data.layout, len(batches)))
    _write_errors(job.output, data.bad)
    done = {i for i in range(len(batches)) if part_path(job.output, i).is_file()}
    todo = [
        {"shard": i, "queries": json.dumps([q.to_json() for q in batch])}
        for i, batch in enumerate(batches)
        if i not in done
    ]
    counts = {
        "layout": data.layout,
        "queries": len(data.queries),
        "pairs": data.pairs,
        "errors": len(data.bad),
        "resumed_queries": sum(len(batches[i]) for i in done),
        "batches": len(batches),
    }
    query_ids = [q.query_id for q in data.queries]
    # From here the texts live in ``todo`` alone, and once handed to Ray in its object store.
    del data, batches
    # What a killed job was writing: never renamed into place, so never counted as done.
    for stale in (job.output / "parts").glob(".part-*.tmp"):
        stale.unlink()
    scoring_started = time.perf_counter()
    results = _score(job, todo) if todo else []
    scoring_s = time.perf_counter() - scoring_started
    scored_pairs = sum(r["pairs"] for r in results)
    working_s = max((r["ended"] for r in results), default=0.0) - min(
        (r["started"] for r in results), default=0.0
    )
    # The parts are read once: for the check below and, asked for, the run file.
    table = _read_parts(job.output, list(TREC_COLUMNS) if job.trec else ["query_id"])
    written = set(table.column("query_id").unique().to_pylist())
    missing = [qid for qid in query_ids if qid not in written]
    if missing:
        raise JobError(f"{len(missing)} queries have no output (first: {missing[0]!r})")
    summary: dict[str, Any] = {
        "input": str(job.input),
        "output": str(job.output),
        "backend": job.backend,
        "model": job.config.model,
        "runtime": job.config.runtime,
        **counts,
        "batches_scored": len(results),
        "pairs_scored": scored_pairs,
        "scoring_s": round(scoring_s, 3),
        "pairs_per_s": round(scored_pairs / scoring_s, 1) if results else None,
        # From the first batch's start to the last one's end: the pool at work, its start-up (the
        # model loaded in each actor) left out.
        "working_s": round(working_s, 3),
        "working_pairs_per_s": round(scored_pairs / working_s, 1) if results else None,
        "batches_by_node": dict(Counter(r["node"] for r in results)),
        "elapsed_s": round(time.perf_counter() - started, 3),
    }
    if job.trec:
        summary["trec"] = str(write_trec(job.output, table, query_ids, job.tag or job.backend))
    (job.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


