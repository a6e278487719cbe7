"""The autoscaling benchmark's pieces that need no Ray: phases, one interval's summary, the plot."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rerank_core.config import load_config
from rerank_tools.autoscale_bench import (
    BACKEND,
    parse_args,
    parse_phases,
    plot,
    service_config,
    summarize,
)
from rerank_tools.benchmark.loadgen import Outcome


def test_phases_parse_and_bad_phases_are_refused() -> None:
    assert parse_phases("1:30,8:90") == [(1, 30.0), (8, 90.0)]
    for bad in ("8:0", "-1:5", "eight:5"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            parse_phases(bad)


def test_summary_counts_only_answers_in_throughput_and_latency() -> None:
    done = [Outcome(0, 0.01 * (i + 1), 200, [0]) for i in range(100)] + [Outcome(0, 9, 503, None)]
    row = summarize(12.0, 8, (2, 1), done, interval_s=2.0)
    assert row == {"t_s": 12.0, "clients": 8, "replicas": 2, "starting": 1, "requests_per_s": 50.0,
                   "errors": 1, "p50_s": 0.505, "p99_s": 1.0}  # fmt: skip
    assert summarize(1.0, 0, (1, 0), [], 2.0)["p99_s"] is None


def test_default_service_is_a_valid_autoscaled_config(tmp_path: Path) -> None:
    args = parse_args(["--out", str(tmp_path / "a.jsonl")])
    serving = load_config(service_config(args)).backends[BACKEND].serving
    assert (serving.min_replicas, serving.max_replicas) == (1, 3) and serving.num_cpus < 1


def test_plot_writes_a_png(tmp_path: Path) -> None:
    done = [Outcome(0, 0.1, 200, [0])]
    rows = [summarize(float(t), 4, (1 + t // 4, 1), done, 2.0) for t in range(0, 12, 2)]
    path = tmp_path / "img" / "autoscaling.png"
    plot(rows, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
