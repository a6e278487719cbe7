"""The load benchmark, bounded to seconds: the load generator against the naive server (real HTTP
on loopback, the tiny cross-encoder) and the in-process ceiling. The whole sweep, with the real
Router app as its served target: tests/serving/test_bench_served.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rerank_core.errors import BackendError, BackendRateLimited, BackendUnavailable
from rerank_tools.benchmark import args as bench_args
from rerank_tools.benchmark import cli
from rerank_tools.benchmark.ceiling import best, load_cross_encoder, measure_ceiling, time_request
from rerank_tools.benchmark.infinity_server import InfinityServer
from rerank_tools.benchmark.loadgen import (
    Load,
    RequestSample,
    Tally,
    check_loopback,
    load_traffic,
    measure,
    post_infinity,
    run_cell,
)
from rerank_tools.benchmark.naive_server import NaiveServer
from rerank_tools.benchmark.scores import check_scores, predict_reference
from rerank_tools.conditions import CPU_FLAGS
from tests.tiny_models import EXAMPLES, build_tiny_cross_encoder

CELL_FIELDS = {
    "kind",
    "target",
    "concurrency",
    "docs_per_request",
    "requests",
    "errors",
    "error_types",
    "duration_s",
    "requests_per_s",
    "pairs_per_s",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "stopped_by",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-ce")


@pytest.fixture(scope="module")
def naive_url(tiny_model: Path) -> Iterator[str]:
    with NaiveServer(tiny_model, threads=1) as server:
        yield server.url


def test_only_loopback_targets_are_accepted() -> None:
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_loopback("http://localhost:1") == "http://localhost:1"
    assert check_loopback("http://[::1]:1") == "http://[::1]:1"
    for url in ("http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:80"):
        with pytest.raises(ValueError, match="refusing"):
            check_loopback(url)


def test_traffic_is_real_passages_topped_up_to_the_size(candidates: Path) -> None:
    passages = {t for e in EXAMPLES for t in (e.relevant, *e.irrelevant)}
    samples = load_traffic(candidates, docs_per_request=10, count=5, seed=1)
    assert len(samples) == 5
    assert all(len(s.documents) == 10 and set(s.documents) <= passages for s in samples)
    assert {s.query for s in samples} <= {e.query for e in EXAMPLES}
    assert load_traffic(candidates, 10, 5, seed=1) == samples  # seeded
    assert len(load_traffic(candidates, 2, 1)[0].documents) == 2


def test_run_cell_is_bounded_by_requests_and_time(naive_url: str, candidates: Path) -> None:
    samples = load_traffic(candidates, docs_per_request=4, count=8)
    by_count = asyncio.run(run_cell(naive_url, samples, 4, duration_s=30, max_requests=12))
    assert by_count.stopped_by == "max_requests"
    assert by_count.requests == 12 and by_count.errors == 0
    assert by_count.pairs_per_s == pytest.approx(by_count.requests_per_s * 4)
    assert 0 < by_count.p50_ms <= by_count.p95_ms <= by_count.p99_ms
    by_time = asyncio.run(run_cell(naive_url, samples, 2, duration_s=0.5, max_requests=10_000))
    assert by_time.stopped_by == "duration"
    assert by_time.duration_s < 5


def test_loops_side_by_side_add_up_after_an_unmeasured_warm_up(naive_url: str, candidates: Path) -> None:
    samples = load_traffic(candidates, docs_per_request=4, count=8)
    tallies = [
        asyncio.run(measure(naive_url, samples, 2, duration_s=30, max_requests=n, warmup_s=0.2))
        for n in (5, 3)
    ]
    assert [(t.sent, len(t.latencies_s), sum(t.errors.values())) for t in tallies] == [(5, 5, 0), (3, 3, 0)]
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    assert (total.sent, len(total.latencies_s)) == (8, 8)
    assert total.elapsed_s == max(t.elapsed_s for t in tallies)


def wait_for(check: Callable[[], bool], timeout_s: float = 30) -> None:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.05)


def test_load_records_every_request_across_a_change_of_clients(naive_url: str, candidates: Path) -> None:
    sample = load_traffic(candidates, docs_per_request=4, count=1)[0]
    body = {"query": sample.query, "documents": sample.documents}
    with Load(naive_url + "/rerank", body, clients=2) as load:
        wait_for(lambda: len(load.outcomes) >= 3)
        load.set_clients(1)
        changed = time.monotonic()
        wait_for(lambda: len(load.done_since(changed)) >= 2)
    sent = len(load.outcomes)
    time.sleep(0.2)
    assert len(load.outcomes) == sent and load.clients == 0  # stopped with the context
    assert all(o.status == 200 and sorted(o.order or []) == [0, 1, 2, 3] for o in load.outcomes)
    assert not any(o.degraded for o in load.outcomes)
    finished = [o.started + o.elapsed_s for o in load.outcomes]
    assert finished == sorted(finished)


def test_load_records_a_refused_connection_as_no_answer() -> None:
    with pytest.raises(ValueError, match="refusing"):
        Load("http://192.0.2.1:8000/rerank", {})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Load(f"http://127.0.0.1:{port}/rerank", {"query": "q", "documents": ["a"]}, clients=1) as load:
        wait_for(lambda: bool(load.outcomes))
    first = load.outcomes[0]
    assert (first.status, first.order, first.detail) == (None, None, "ConnectError")


def test_cli_refuses_a_remote_host(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--url", "http://192.0.2.1:8000"])
    assert info.value.code == 2
    assert "refusing" in capsys.readouterr().err


def test_ceiling_on_the_tiny_model(tiny_model: Path) -> None:
    model = load_cross_encoder(tiny_model, threads=1)
    pairs = [(e.query, t) for e in EXAMPLES for t in (e.relevant, *e.irrelevant)] * 8
    measurements = measure_ceiling(model, pairs, [4, 16], max_seconds_per_size=10.0)
    assert [m.batch_size for m in measurements] == [4, 16]
    assert all(m.pairs == len(pairs) and m.pairs_per_s > 0 for m in measurements)
    assert best(measurements).pairs_per_s == max(m.pairs_per_s for m in measurements)
    # A budget of zero stops after the first batch.
    assert measure_ceiling(model, pairs, [4], max_seconds_per_size=0.0)[0].pairs == 4
    assert time_request(model, pairs[:10], batch_size=16) > 0


def test_cells_parse_as_documents_by_concurrency() -> None:
    assert bench_args.cells("10x1, 10x32,100x8") == [(10, 1), (10, 32), (100, 8)]
    for bad in ("10", "10x0", "x8", "ten x 8", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_args.cells(bad)


def test_infinity_requests_and_answers_in_its_own_shape() -> None:
    seen: list[dict[str, object]] = []

    def infinity(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        # Infinity answers in score order; the client puts scores back in input order.
        return httpx.Response(
            200,
            json={
                "object": "rerank",
                "results": [
                    {"relevance_score": 0.9, "index": 1, "document": None},
                    {"relevance_score": 0.2, "index": 0, "document": None},
                ],
            },
        )

    async def one() -> list[float]:
        transport = httpx.MockTransport(infinity)
        async with httpx.AsyncClient(base_url="http://127.0.0.1:1", transport=transport) as http:
            return await post_infinity(http, RequestSample("q", ["a", "b"]), "m", None)

    assert asyncio.run(one()) == [0.2, 0.9]
    assert seen == [{"query": "q", "documents": ["a", "b"], "return_documents": False, "model": "m"}]


def test_an_infinity_refusal_counts_as_a_typed_error() -> None:
    async def one(status: int) -> None:
        transport = httpx.MockTransport(lambda _: httpx.Response(status, json={}))
        async with httpx.AsyncClient(base_url="http://127.0.0.1:1", transport=transport) as http:
            await post_infinity(http, RequestSample("q", ["a"]), None, None)

    with pytest.raises(BackendRateLimited):
        asyncio.run(one(429))
    with pytest.raises(BackendError, match="HTTP 500"):
        asyncio.run(one(500))


def test_infinity_server_without_its_venv_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"setup_infinity\.sh"):
        InfinityServer(tmp_path, venv=tmp_path / "absent").start()


def test_score_check_of_the_naive_server_matches_in_process_predict(
    naive_url: str, tiny_model: Path, candidates: Path
) -> None:
    samples = load_traffic(candidates, docs_per_request=5, count=3, seed=2)
    reference = predict_reference(load_cross_encoder(tiny_model, threads=1))
    record = check_scores(naive_url, "service", samples, reference, target="naive")
    assert record["kind"] == "score_check" and record["pairs"] == 15
    assert record["max_abs_diff"] < 1e-5
    assert record["mean_kendall_tau"] == pytest.approx(1.0)


def test_a_run_records_its_machine_and_cell_duration(
    naive_url: str, candidates: Path, tmp_path: Path
) -> None:
    """A result file says where and how it was measured: the config record carries the seconds a
    cell and the machine (CPU and its bf16/AMX flags, cores, versions, date, commit)."""
    out = tmp_path / "run"
    cli.main([
        "--url", naive_url, "--candidates", str(candidates), "--cells", "10x1",
        "--duration", "0.5", "--max-requests", "3", "--warmup", "0", "--output-dir", str(out),
    ])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    config = next(r for r in records if r["kind"] == "config")
    assert config["duration_s"] == 0.5
    machine = config["machine"]
    assert machine["cores"] == os.cpu_count() and machine["cpu"]
    assert set(machine["cpu_flags"]) <= set(CPU_FLAGS)
    assert {"torch", "ray", "rerank-service"} <= set(machine["versions"])
    assert machine["date"].startswith(time.strftime("%Y-", time.gmtime()))
    cell = next(r for r in records if r["kind"] == "cell")
    assert cell["requests"] >= 1 and cell["docs_per_request"] == 10
