"""``rerank-batch`` end to end, as a user runs it: a subprocess that starts its own local Ray, reads
a file with good and bad rows, scores on a Ray Data actor pool, writes parts, errors, a summary and a
TREC run; killed half-way and started again, it ends with every query exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from tests.tiny_models import EXAMPLES

RERANK_BATCH = [sys.executable, "-m", "rerank_batch.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def config(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service config whose one local backend is the tiny cross-encoder, and an API backend."""
    path = tmp_path_factory.mktemp("batch") / "service.yaml"
    backends = {
        "tiny": {"type": "cross_encoder", "model": str(tiny_model_dir)},
        "cohere": {"type": "cohere", "model": "rerank-v3.5"},
    }
    path.write_text(yaml.safe_dump({"backends": backends}))
    return path


def query_rows(copies: int) -> list[dict[str, Any]]:
    """``copies`` rounds of the tiny model's examples, one query row each."""
    return [
        {
            "query_id": f"q{c}-{n}",
            "query": e.query,
            "candidates": [
                {"doc_id": f"d{i}", "text": t} for i, t in enumerate([e.relevant, *e.irrelevant])
            ],
        }
        for c in range(copies)
        for n, e in enumerate(EXAMPLES)
    ]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def rerank_batch(*args: Any, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RERANK_BATCH, *map(str, args), "--no-progress"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def output_rows(output: Path) -> list[dict[str, Any]]:
    return pq.read_table(output / "parts").to_pylist()


def test_a_job_scores_every_good_query_once_and_sets_bad_rows_aside(config: Path, tmp_path: Path) -> None:
    good = query_rows(3)
    rows: list[Any] = [*good[:5], "{oops", {"query_id": "bad", "query": "x", "candidates": []}, *good[5:]]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out"
    done = rerank_batch(source, "--output", output, "--config", config, "--backend", "tiny",
                        "--batch-pairs", 9, "--trec")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == json.loads((output / "summary.json").read_text())
    pairs = sum(len(q["candidates"]) for q in good)
    assert (summary["queries"], summary["pairs"], summary["errors"]) == (len(good), pairs, 2)
    # Whole queries, 9 pairs a batch at most: two 4-candidate queries each.
    assert summary["batches"] == summary["batches_scored"] == (len(good) + 1) // 2
    scored = output_rows(output)
    assert Counter((r["query_id"], r["doc_id"]) for r in scored) == Counter(
        (q["query_id"], c["doc_id"]) for q in good for c in q["candidates"]
    )
    for query in good:
        ranked = sorted((r for r in scored if r["query_id"] == query["query_id"]), key=lambda r: r["rank"])
        assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
        assert ranked[0]["doc_id"] == "d0"  # the tiny model ranks each example's relevant text first
    errors = [json.loads(line) for line in (output / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["query_id"], e["reason"][:12]) for e in errors] == [
        (6, None, "not JSON (Ex"),
        (7, "bad", "no candidate"),
    ]
    trec = (output / "run.trec").read_text().splitlines()
    assert len(trec) == pairs
    assert trec[0].split() == [good[0]["query_id"], "Q0", "d0", "1", trec[0].split()[4], "tiny"]

    again = rerank_batch(source, "--output", output, "--config", config, "--backend", "tiny",
                         "--batch-pairs", 9)  # fmt: skip
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout.strip().splitlines()[-1])
    assert (resumed["batches_scored"], resumed["resumed_queries"]) == (0, len(good))
    assert sorted(output_rows(output), key=str) == sorted(scored, key=str)


def test_a_job_refuses_what_it_cannot_run_with_a_clear_message(config: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [*query_rows(1), {"query_id": "x", "query": "q"}])
    output = tmp_path / "out"
    strict = rerank_batch(source, "--output", output, "--config", config, "--backend", "tiny", "--strict")
    assert strict.returncode == 1
    assert f"{source}:5: no candidates" in strict.stderr
    api = rerank_batch(source, "--output", output, "--config", config, "--backend", "cohere")
    assert (api.returncode, "is an API backend (cohere)" in api.stderr) == (1, True)
    unknown = rerank_batch(source, "--output", output, "--config", config, "--backend", "nope")
    assert (unknown.returncode, "no backend 'nope'" in unknown.stderr) == (1, True)
    usage = rerank_batch(source, "--output", output, "--config", config, "--batch-pairs", 0)
    assert (usage.returncode, "--batch-pairs must be at least 1" in usage.stderr) == (2, True)
    for result in (strict, api, unknown, usage):
        assert "Traceback" not in result.stderr
    # An output folder holds one job: another input into it is refused before any work.
    (output / "parts").mkdir(parents=True)
    (output / "job.json").write_text(json.dumps({"inputs": [], "layout": "queries"}))
    other = rerank_batch(source, "--output", output, "--config", config, "--backend", "tiny")
    assert other.returncode == 1
    assert "holds the output of another job (inputs differs)" in other.stderr


def test_a_job_killed_half_way_resumes_with_every_query_exactly_once(config: Path, tmp_path: Path) -> None:
    good = query_rows(40)  # 160 queries, one a batch
    source = write_jsonl(tmp_path / "in.jsonl", good)
    output = tmp_path / "out"
    args = [*RERANK_BATCH, str(source), "--output", str(output), "--config", str(config),
            "--backend", "tiny", "--batch-pairs", "4", "--no-progress"]  # fmt: skip
    job = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    family: set[psutil.Process] = set()
    try:
        deadline = time.monotonic() + 180
        while len(list((output / "parts").glob("part-*.parquet"))) < 10:
            assert job.poll() is None, "the job ended before it was killed"
            assert time.monotonic() < deadline, "no part written in time"
            family |= set(psutil.Process(job.pid).children(recursive=True))
            time.sleep(0.05)
    finally:
        # The job's driver and the local Ray it started: one process group, stopped by its id.
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        psutil.wait_procs(list(family), timeout=30)
    before = {p.name for p in (output / "parts").glob("part-*.parquet")}
    assert 10 <= len(before) < len(good)

    done = rerank_batch(source, "--output", output, "--config", config, "--backend", "tiny",
                        "--batch-pairs", 4)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # Only the batches without a part were scored again: none twice, none lost.
    assert summary["resumed_queries"] == len(before)
    assert summary["batches_scored"] == len(good) - len(before)
    scored = output_rows(output)
    assert Counter((r["query_id"], r["doc_id"]) for r in scored) == Counter(
        (q["query_id"], c["doc_id"]) for q in good for c in q["candidates"]
    )
    assert not list((output / "parts").glob(".*"))
