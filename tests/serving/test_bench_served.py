"""The load benchmark's whole sweep with the real Router app as its served target (a Serve app of
its own with the service's default limits, so 100-document requests are allowed), beside the naive
baseline and the in-process ceiling of the same tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rerank_tools.benchmark import cli
from tests.serving.conftest import serving
from tests.tools.benchmark.test_bench import CELL_FIELDS

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def bench_app(ray_serve: int, tiny_model_dir: Path) -> Iterator[str]:
    from ray import serve

    from deployments.app import build_app

    config = {
        "backends": {
            "tiny": {
                "type": "cross_encoder",
                "model": str(tiny_model_dir),
                "serving": serving(num_cpus=0.1),
            }
        },
        "routes": {"default": {"backends": ["tiny"]}},
        # Beside the shared app on the tests' 2-CPU Ray: small CPU shares, so both fit.
        "router": {"num_cpus": 0.1},
    }
    serve.run(build_app({"service": config}), name="bench", route_prefix="/bench")
    try:
        yield f"http://127.0.0.1:{ray_serve}/bench"
    finally:
        serve.delete("bench")


def test_cli_sweep_with_naive_baseline_and_ceiling(
    bench_app: str, tiny_model_dir: Path, candidates: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    stdout_path = tmp_path / "stdout.jsonl"
    with stdout_path.open("w") as stdout:
        args = cli.build_parser().parse_args(
            [
                *("--url", bench_app, "--model", "default", "--naive", "--ceiling"),
                *("--model-dir", str(tiny_model_dir)),
                *("--candidates", str(candidates), "--concurrency", "1,32", "--docs", "10,100"),
                *("--duration", "0.5", "--max-requests", "40", "--warmup", "1"),
                *("--ceiling-batch-sizes", "8,32", "--ceiling-pairs", "128", "--threads", "1"),
                *("--samples", "8", "--max-total-s", "120", "--output-dir", str(out)),
            ]
        )
        summary = cli.run(args, cli.build_parser(), stdout)
    lines = [json.loads(line) for line in stdout_path.read_text().splitlines()]
    assert lines == [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "config" and lines[0]["torch_threads"] == 1
    assert lines[-1] == summary and summary["errors"] == 0

    cells = [r for r in lines if r["kind"] == "cell"]
    assert {(c["target"], c["concurrency"], c["docs_per_request"]) for c in cells} == {
        (t, c, d) for t in ("served", "naive") for c in (1, 32) for d in (10, 100)
    }
    for cell in cells:
        assert set(cell) >= CELL_FIELDS
        assert cell["requests"] > 0 and cell["errors"] == 0
        assert cell["pairs_per_s"] == pytest.approx(cell["requests_per_s"] * cell["docs_per_request"])
        assert cell["vs_ceiling"] > 0

    ceiling = [r for r in lines if r["kind"] == "ceiling"]
    assert [r["batch_size"] for r in ceiling] == [8, 32]
    best_line = next(r for r in lines if r["kind"] == "ceiling_best")
    assert best_line["pairs_per_s"] == max(r["pairs_per_s"] for r in ceiling)

    comparison = next(r for r in lines if r["kind"] == "comparison")
    assert comparison["served_over_ceiling"] > 0
    assert comparison["served_over_naive"] > 0
    latency = comparison["latency_c1_d100_ms"]
    assert latency["served_p50"] > 0 and latency["naive_p50"] > 0 and latency["in_process"] > 0

    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
