"""Goodput under overload (rerank_tools.benchmark.overload): the share is computed from the cells'
answers within the deadline, and the CLI offers the mode. The measurement itself runs against a
served service (benchmarks/run_served.sh --overload); it is rehearsed, not timed, in tests."""

from __future__ import annotations

from rerank_tools.benchmark import cli
from rerank_tools.benchmark.loadgen import CellResult
from rerank_tools.benchmark.overload import OverloadResult


def cell(concurrency: int, requests: int, late: int = 0, refused: int = 0) -> CellResult:
    return CellResult(
        target="t", concurrency=concurrency, docs_per_request=100, requests=requests,
        errors=refused, duration_s=10.0, requests_per_s=requests / 10, pairs_per_s=requests * 10.0,
        mean_ms=1, p50_ms=1, p95_ms=1, p99_ms=1, error_types={"rate_limited": refused} if refused else {},
        late=late,
    )  # fmt: skip


def test_goodput_counts_only_answers_within_the_deadline() -> None:
    result = OverloadResult(cell(8, 70), cell(64, 70, late=7, refused=500), deadline_s=60)
    # 63 answers within the deadline of 70 unloaded: 0.9 of the unloaded rate.
    assert result.goodput_pairs_per_s == 630.0
    assert result.goodput_share == 0.9
    record = result.to_dict()
    assert record["kind"] == "overload" and record["refused"] == 500
    assert record["answered_late"] == 7 and record["clients"] == 64


def test_the_cli_offers_the_overload_mode() -> None:
    args = cli.build_parser().parse_args(["--url", "http://127.0.0.1:8011", "--overload"])
    assert args.overload and args.overload_clients == 64 and args.overload_base == 8
    assert args.deadline == 60.0
