"""The table of one benchmark sitting (``benchmarks/run_sitting.sh``): every server's cells side by side.

A sitting directory holds one folder per model, and in it one ``rerank-bench`` output folder per run
(``peers``: ceiling, naive server and Infinity; ``service-<config>-<ingress>``: the service alone).
This reads every ``results.jsonl`` under it, writes ``sitting.json`` (``conditions``: the machine and
versions ``rerank-bench`` recorded, with the seconds a cell; ``rows``: one per model and target, each
cell's pairs/s, p50, p99, requests and errors, and the score check) and prints one Markdown table
per model.

    python -m rerank_tools.benchmark.sitting runs/sitting-20261206-2000
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CEILING = "in-process predict (ceiling)"


def read_records(path: Path) -> Iterable[dict[str, Any]]:
    """The JSON records of a results file, one a line."""
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def collect(sitting: Path) -> list[dict[str, Any]]:
    """One row per (model, target), in the order the sitting ran them."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(model: str, target: str) -> dict[str, Any]:
        return rows.setdefault((model, target), {"model": model, "target": target, "cells": {}})

    for results in sorted(sitting.glob("*/*/results.jsonl"), key=lambda p: p.stat().st_mtime):
        model = results.parent.parent.name
        for record in read_records(results):
            kind = record.get("kind")
            if kind == "cell":
                cell = f"{record['docs_per_request']}x{record['concurrency']}"
                row(model, record["target"])["cells"][cell] = {
                    k: record[k] for k in ("pairs_per_s", "p50_ms", "p99_ms", "requests", "errors")
                }
            elif kind == "ceiling_best" and "docs_per_request" in record:
                row(model, CEILING)["ceiling_by_docs"] = {
                    **row(model, CEILING).get("ceiling_by_docs", {}),
                    str(record["docs_per_request"]): record["pairs_per_s"],
                }
            elif kind == "score_check":
                row(model, record["target"])["score_check"] = {
                    k: record[k] for k in ("pairs", "max_abs_diff", "mean_kendall_tau")
                }
    return list(rows.values())


def conditions_of(sitting: Path) -> dict[str, Any]:
    """What the sitting's first ``rerank-bench`` run recorded of its machine and versions, with
    the seconds a cell; empty where no run recorded them."""
    for results in sorted(sitting.glob("*/*/results.jsonl"), key=lambda p: p.stat().st_mtime):
        for record in read_records(results):
            if record.get("kind") == "config" and record.get("machine"):
                return {**record["machine"], "cell_duration_s": record.get("duration_s")}
    return {}


def _cell_order(rows: list[dict[str, Any]]) -> list[str]:
    cells: dict[str, None] = {}
    for r in rows:
        cells.update(dict.fromkeys(r["cells"]))
    return list(cells)


def _fmt_cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    if not cell["requests"]:
        return f"0 ({cell['errors']} errors)"
    text = f"{cell['pairs_per_s']:,.1f} ({cell['p50_ms']:,.0f} / {cell['p99_ms']:,.0f} ms)"
    return text + (f", {cell['errors']} errors" if cell["errors"] else "")


def table(rows: list[dict[str, Any]], model: str) -> str:
    """The Markdown table of ``model``: pairs/s (p50 / p99 ms) per cell, and the score check."""
    mine = [r for r in rows if r["model"] == model]
    cells = _cell_order(mine)
    lines = [
        f"### {model}",
        "",
        "| server | " + " | ".join(f"{c.replace('x', ' x C')}: pairs/s (p50 / p99)" for c in cells)
        + " | scores vs predict: max diff, tau |",
        "|---" * (len(cells) + 2) + "|",
    ]
    for r in mine:
        if r["target"] == CEILING:
            by_docs = r.get("ceiling_by_docs", {})
            docs = [c.split("x")[0] for c in cells]
            values = [f"{by_docs[d]:,.1f}" if d in by_docs else "-" for d in docs]
        else:
            values = [_fmt_cell(r["cells"].get(c)) for c in cells]
        check = r.get("score_check")
        checked = f"{check['max_abs_diff']:.2g}, {check['mean_kendall_tau']:.3f}" if check else "-"
        lines.append(f"| {r['target']} | " + " | ".join(values) + f" | {checked} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sitting", type=Path, help="the sitting's output directory")
    args = parser.parse_args(argv)
    rows = collect(args.sitting)
    if not rows:
        print(f"no results under {args.sitting}", file=sys.stderr)
        return 1
    sitting = {"conditions": conditions_of(args.sitting), "rows": rows}
    (args.sitting / "sitting.json").write_text(json.dumps(sitting, indent=1) + "\n")
    models = list(dict.fromkeys(r["model"] for r in rows))
    print("\n\n".join(table(rows, m) for m in models))
    print(f"\n(rows: {args.sitting / 'sitting.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
