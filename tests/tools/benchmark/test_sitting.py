"""The sitting's table: every run's cells side by side, per model, from the result files alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rerank_tools.benchmark.sitting import CEILING, collect, main

#: What ``rerank-bench`` records of its machine (``rerank_tools.conditions``), abridged.
MACHINE = {"cpu": "AMD EPYC", "cores": 2, "cpu_flags": ["avx2"], "date": "2026-12-08T01:00:00Z"}


def cell(target: str, docs: int, concurrency: int, pairs_per_s: float, errors: int = 0) -> dict[str, Any]:
    return {
        "kind": "cell",
        "target": target,
        "docs_per_request": docs,
        "concurrency": concurrency,
        "pairs_per_s": pairs_per_s,
        "p50_ms": 10.0,
        "p99_ms": 30.0,
        "requests": 100,
        "errors": errors,
    }


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.mkdir(parents=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_rows_per_model_and_target_with_ceiling_and_score_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "near-free" / "peers",
        [
            {"kind": "config", "duration_s": 20, "machine": MACHINE},
            {"kind": "ceiling_best", "docs_per_request": 10, "pairs_per_s": 5000.0},
            {
                "kind": "score_check",
                "target": "naive",
                "pairs": 20,
                "max_abs_diff": 1e-7,
                "mean_kendall_tau": 1.0,
            },
            cell("naive", 10, 1, 900.0),
            cell("naive", 100, 8, 2000.0),
        ],
    )
    write(tmp_path / "near-free" / "service-bench-haproxy", [cell("service-bench-haproxy", 10, 1, 500.0, 2)])
    rows = collect(tmp_path)
    by_target = {r["target"]: r for r in rows}
    assert by_target[CEILING]["ceiling_by_docs"] == {"10": 5000.0}
    assert by_target["naive"]["cells"]["100x8"]["pairs_per_s"] == 2000.0
    assert by_target["naive"]["score_check"]["mean_kendall_tau"] == 1.0

    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "### near-free" in out and "| 10 x C1: pairs/s (p50 / p99) |" in out
    assert "| naive | 900.0 (10 / 30 ms) | 2,000.0 (10 / 30 ms) | 1e-07, 1.000 |" in out
    assert "| service-bench-haproxy | 500.0 (10 / 30 ms), 2 errors | - | - |" in out
    written = json.loads((tmp_path / "sitting.json").read_text())
    assert written["rows"] == rows
    # What rerank-bench recorded of the machine, with the seconds a cell, travels with the rows.
    assert written["conditions"] == {**MACHINE, "cell_duration_s": 20}


def test_an_empty_sitting_says_so(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 1
