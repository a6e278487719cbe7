"""Figures in docs/ pages other than benchmarks.md (which is generated whole: test_page.py) stay in
step with the result files they name: each table's figures, row by row, are what its file holds."""

from __future__ import annotations

from typing import Any

import pytest

from rerank_tools.benchmark.page import DOCS
from rerank_tools.benchmark.sitting import read_records


def records(name: str) -> list[dict[str, Any]]:
    return list(read_records(DOCS / "results" / name))


def table_rows(page: str, header_start: str) -> list[list[str]]:
    """The cells of each row of the Markdown table in ``page`` whose header begins so."""
    lines = (DOCS / page).read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_node_loss_table_is_its_result_file() -> None:
    runs = records("node-loss-2026-12-07.jsonl")
    rows = table_rows("operations-faults.md", "| run | command | answered 200 |")
    assert "node-loss-2026-12-07.jsonl" in (DOCS / "operations-faults.md").read_text()
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs, strict=True):
        outcomes = run["outcomes"]
        assert row[2:] == [
            str(outcomes.get("200", 0)),
            str(outcomes.get("200 degraded", 0)),
            str(run["unanswered"]),
            f"{run['slowest_answer_s']:.1f} s",
        ], row
        # The command column names the run's own switches.
        switches = run["run"]
        assert ("--one-node" in row[1]) == switches["one_node"]
        assert ("--ingress proxy" in row[1]) == (switches["ingress"] == "proxy")
        assert ("--ray-health-defaults" in row[1]) == switches["ray_health_defaults"]


@pytest.mark.parametrize("page", ["operations-faults.md"])
def test_the_overload_table_is_its_result_file(page: str) -> None:
    runs = records("overload-2026-12-07.jsonl")
    rows = table_rows(page, "| ingress | refusal hold |")
    assert len(rows) == len(runs)
    for row, r in zip(rows, runs, strict=True):
        assert row[0].startswith("HAProxy" if r["ingress"] == "haproxy" else "Ray's Python proxy")
        assert row[1].startswith(f"{r['refusal_hold_s']:g} s")
        assert row[2:] == [
            f"{r['unloaded_pairs_per_s']:.1f}",
            f"{r['goodput_pairs_per_s']:.1f}",
            f"{r['goodput_share']:.2f}",
            str(r["answered"]),
            f"{r['refused']:,}",
            f"{r['answered_p99_ms'] / 1000:.1f} s",
            f"{r['refused_max_ms'] / 1000:.1f} s",
            str(r["client_timeouts"]),
        ], row


def test_the_batch_throughput_table_is_its_result_file() -> None:
    runs = [r for r in records("batch-2026-12-07.jsonl") if "engine_pairs_per_s" in r]
    rows = table_rows("batch.md", "| model (MiniLM-L6 compute) | run first |")
    assert len(rows) == len(runs)
    # A row names its runtime and which side ran first; the file holds the runs in time order.
    by_run = {(row[0].split()[0].lower(), row[1].split()[0]): row for row in rows}
    for r in runs:
        row = by_run[(r["runtime"], r.get("first", "engine"))]
        assert row[2:4] == [
            f"{r['engine_pairs_per_s']:.1f} pairs/s",
            f"{r['job_working_pairs_per_s']:.1f} pairs/s",
        ], row
        assert row[5] == f"{r['command_s']:.1f} s against {r['engine_s']:.1f} s", row
        # The file keeps its ratios to 3 places; the page shows 2, rounded from the unrounded ratio.
        assert abs(float(row[4].strip("*")) - r["working_ratio"]) <= 0.005 + 1e-9, row
        assert abs(float(row[6]) - r["command_ratio"]) <= 0.005 + 1e-9, row


def test_the_tenants_table_is_its_result_file() -> None:
    groups = {
        (r["measurement"], r["phase"], r["group"]): r
        for r in records("tenants-2026-12-07.jsonl")
        if r.get("kind") == "mix_group"
    }
    page = (DOCS / "tenants.md").read_text().splitlines()

    def row(starts: str, after: str | None = None) -> str:
        """The first table row beginning so (after the row beginning ``after``)."""
        begin = 0 if after is None else next(n for n, line in enumerate(page) if line.startswith(after))
        return next(line for line in page[begin + 1 :] if line.startswith(starts))

    def latency(r: dict[str, Any], key: str = "") -> str:
        return f"{r[key + 'p50_ms']:,.0f} / {r[key + 'p99_ms']:,.0f} ms"

    for name, label in (("flood", "| flood: interactive"), ("flood-bulk-chunk-8", "| flood again")):
        head = row(label)
        alone, mixed = groups[(name, "alone", "interactive")], groups[(name, "mixed", "interactive")]
        assert latency(alone) in head and latency(mixed) in head, head
        ratio = mixed["p99_ms"] / alone["p99_ms"]
        assert f"{ratio:.2f}x" in head or f"{ratio:.1f}x" in head, head
        bulk = row("| | bulk pairs/s", after=label)
        b_alone, b_mixed = groups[(name, "alone", "bulk")], groups[(name, "mixed", "bulk")]
        share = b_mixed["pairs_per_s"] / b_alone["pairs_per_s"]
        assert f"| {b_alone['pairs_per_s']:.1f} | {b_mixed['pairs_per_s']:.1f} ({share:.2f}) |" in bulk

    storm = row("| storm:")
    alone, mixed = groups[("storm", "alone", "limited")], groups[("storm", "mixed", "limited")]
    assert latency(alone, "refused_") in storm and latency(mixed, "refused_") in storm, storm
    other = row("| | the other tenant's pairs/s", after="| storm:")
    o_alone, o_mixed = groups[("storm", "alone", "interactive")], groups[("storm", "mixed", "interactive")]
    share = o_mixed["pairs_per_s"] / o_alone["pairs_per_s"]
    assert f"| {o_alone['pairs_per_s']:.1f} | {o_mixed['pairs_per_s']:.1f} ({share:.2f}) |" in other
