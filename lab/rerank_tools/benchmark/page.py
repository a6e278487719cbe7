"""docs/benchmarks.md, written from the result files it names: the current figures only, each
table from the sitting or run that measured it. Rerun a sitting (docs/benchmark-method.md), copy its
``sitting.json`` into ``docs/results/`` and name it in ``SITTING`` below, then
``python -m rerank_tools.benchmark.page > docs/benchmarks.md``; a test fails when the page and
its result files differ."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rerank_tools.benchmark.sitting import read_records, table
from rerank_tools.conditions import describe

#: The repository's docs/ (the lab is installed from a clone: lab/rerank_tools/benchmark/page.py).
DOCS = Path(__file__).resolve().parents[3] / "docs"
#: The sitting the page's side-by-side tables come from (``run_sitting.sh``'s sitting.json).
SITTING = DOCS / "results" / "sitting-2026-12-07.json"
#: The service target compared with the peer, per model: the configuration a user would pick.
SERVICE_FOR = {"near-free": "service-fast-haproxy", "bench": "service-fast-haproxy"}
#: In-process throughput of each runtime on the benchmark model (``rerank-bench --runtimes``),
#: measured on the same quiet machine right after the sitting.
RUNTIMES = DOCS / "results" / "runtimes-2026-12-07.jsonl"
#: Goodput under overload (``run_served.sh --overload``), serve_bench.yaml as shipped, through
#: each ingress at two refusal holds (the page shows the shipped one).
OVERLOAD = DOCS / "results" / "overload-2026-12-07.jsonl"
#: The quality table: ``rerank-eval``'s summary.json of each way of reranking DL20, one a line, with
#: a ``label`` added (each records the machine it ran on).
QUALITY = DOCS / "results" / "quality-2026-12-08.jsonl"
#: The served target of each runtime in the sitting.
SERVED_AS = {"torch": "service-bench-haproxy", "openvino-bf16": "service-fast-haproxy"}
PEER = "infinity-bfloat16"

HEADER = """\
# Benchmarks

The current figures, each from the result file named under its table; how they were taken and how
to rerun them: [benchmark-method.md](benchmark-method.md). This page is written by
`python -m rerank_tools.benchmark.page` from those files (a test keeps it in step); how the figures
came to be, run by run: [CHANGELOG.md](../CHANGELOG.md).

## Machine

"""



def _cell(rows: list[dict[str, Any]], model: str, target: str, cell: str) -> float | None:
    for r in rows:
        if r["model"] == model and r["target"] == target:
            found = r["cells"].get(cell)
            return None if found is None else float(found["pairs_per_s"])
    return None


def ratios(rows: list[dict[str, Any]], model: str) -> str:
    """The service over the peer, cell by cell, and HAProxy's ingress over Ray's proxy."""
    service = SERVICE_FOR[model]
    cells = list(dict.fromkeys(c for r in rows if r["model"] == model for c in r["cells"]))
    out = []
    for label, a, b in (
        (f"`{service}` / `{PEER}`", service, PEER),
        ("`service-bench-haproxy` / `service-bench-proxy`", "service-bench-haproxy", "service-bench-proxy"),
    ):
        parts = []
        for c in cells:
            x, y = _cell(rows, model, a, c), _cell(rows, model, b, c)
            if x is not None and y:
                parts.append(f"{c.replace('x', ' x C')}: {x / y:.2f}x")
        if parts:
            out.append(f"- {label}: " + ", ".join(parts))
    return "\n".join(out)


def runtimes_table(rows: list[dict[str, Any]]) -> str:
    """Each runtime in-process (the engine's ``score_pairs``, 100-document requests) and served
    at 100 x C8 in the sitting, as a share of it."""
    records = list(read_records(RUNTIMES))
    lines = [
        "## Served against the same runtime in-process",
        "",
        "The benchmark model, 100-document requests: the scoring engine in-process (`rerank-bench "
        "--runtimes openvino-bf16 --runtime-docs 100`, 2 threads) and the service at 100 x C8 in "
        f"the sitting above. Source: `docs/results/{RUNTIMES.name}`.",
        "",
        "| runtime | in-process pairs/s | served pairs/s (100 x C8) | served / in-process |",
        "|---|---|---|---|",
    ]
    for r in records:
        served = _cell(rows, "bench", SERVED_AS.get(r["label"], ""), "100x8")
        ratio = f"{served / r['pairs_per_s']:.2f}" if served else "-"
        shown = f"{served:,.1f}" if served else "-"
        lines.append(f"| {r['label']} | {r['pairs_per_s']:,.1f} | {shown} | {ratio} |")
    return "\n".join(lines)


def overload_section() -> str:
    """Goodput of clients that resend at once after a refusal, as a share of the unloaded rate: the
    runs of ``OVERLOAD`` at the shipped refusal hold, through each ingress."""
    from rerank_core.config.service import RouterConfig

    hold = RouterConfig().refusal_hold_s
    records = list(read_records(OVERLOAD))
    shipped = [r for r in records if r["refusal_hold_s"] == hold]
    first = shipped[0]
    ingress = {"haproxy": "HAProxy (shipped)", "proxy": "Ray's Python proxy"}
    return "\n".join(
        [
            "## Overload: goodput when clients resend at once",
            "",
            "`CONFIG=benchmarks/serve_bench.yaml SERVICE_ONLY=1 benchmarks/run_served.sh --overload "
            "--docs 100 --duration 40 --deadline 60` (`INGRESS=proxy` for Ray's proxy): the benchmark "
            f"model (torch fp32) unloaded at {first['unloaded_concurrency']} clients, then "
            f"{first['clients']} clients of {first['docs_per_request']}-document requests that resend "
            f"at once after a refusal; goodput counts answers within {first['deadline_s']:g} s; the "
            f"shipped refusal hold ({hold:g} s). A sitting of its own, not the one above: "
            f"{first['date']}, {first['cpu']}. Source: "
            f"`docs/results/{OVERLOAD.name}` (every run, other holds included: "
            "[operations-faults.md](operations-faults.md)).",
            "",
            "| ingress | unloaded pairs/s | goodput pairs/s | share | answered (late) | refused | "
            "slowest refusal | answered p99 | client time-outs |",
            "|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {ingress[r['ingress']]} | {r['unloaded_pairs_per_s']:.1f} | "
                f"{r['goodput_pairs_per_s']:.1f} | {r['goodput_share']:.2f} | {r['answered']} "
                f"({r['answered_late']}) | {r['refused']:,} | {r['refused_max_ms']:,.0f} ms | "
                f"{r['answered_p99_ms'] / 1000:.1f} s | {r['client_timeouts']} |"
                for r in shipped
            ),
        ]
    )


def machine(conditions: dict[str, Any]) -> str:
    """The sitting's machine, as its result file records it."""
    recorded = f" (recorded {conditions['recorded']})" if conditions.get("recorded") else ""
    return (
        f"{describe(conditions)}; cells of {conditions['cell_duration_s']:g} s. Source: the "
        f"`conditions` of `docs/results/{SITTING.name}`{recorded}. The machine is shared and noisy: "
        "compare figures within one sitting (every server alone, one after another), never across "
        "sittings. No GPU figure yet: `scripts/gpu_check.sh` is the prepared GPU run, and it has "
        "not had a GPU to run on.\n"
    )


def quality_section() -> str:
    """nDCG@10, MRR@10 and recall of the first stage and of each way of reranking, from ``QUALITY``."""
    records = list(read_records(QUALITY))

    def row(label: str, m: dict[str, Any]) -> str:
        figures = (m[k] for k in ("ndcg@10", "mrr@10", "recall@10", "recall@100"))
        return f"| {label} | " + " | ".join(f"{x:.4f}" for x in figures) + " |"

    dates = sorted({r["machine"]["date"][:10] for r in records})
    return "\n".join(
        [
            "## Quality: `rerank-eval`",
            "",
            "TREC DL 2020 passage task (54 queries, BM25 top-100, NIST judgments; `../shared/data`), "
            "metrics by ir-measures: `rerank-eval --dataset trec-dl20 --data-dir ../shared/data` "
            "(in-process), the same with `--url http://127.0.0.1:8000 --model default` (through "
            "`make run`), and `rerank-batch ../shared/data/trec-dl20/candidates.jsonl --config "
            "serve_config.yaml --backend minilm --trec` judged by `rerank-eval --scored-run`. "
            f"Source: `docs/results/{QUALITY.name}` (each line the run's summary.json, with the "
            f"machine it ran on: {', '.join(dates)}).",
            "",
            "| TREC DL 2020, BM25 top-100 | nDCG@10 | MRR@10 | R@10 | R@100 |",
            "| --- | --- | --- | --- | --- |",
            row("BM25 order (first stage, as given)", records[0]["first_stage"]),
            *(row(r["label"], r) for r in records),
            "",
            "Serving does not change scores (`tests/serving/test_eval_service.py`). Each runtime's "
            "agreement with torch fp32 and its speed in-process: "
            "[choosing-a-reranker.md](choosing-a-reranker.md).",
        ]
    )


def render() -> str:
    """The whole page."""
    sitting: dict[str, Any] = json.loads(SITTING.read_text())
    rows: list[dict[str, Any]] = sitting["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    parts = [HEADER + machine(sitting["conditions"]), "## Side by side with the peer, one sitting", ""]
    parts.append(
        "TREC DL20 traffic, closed loop, 10 or 100 documents a request at C requests in flight; "
        "pairs/s, and p50 / p99 latency. `bench`: a cross-encoder with MiniLM-L6's compute "
        "(`make bench-model`); `near-free`: 1 layer, hidden 32, the same tokenizer, so what is "
        "measured is the serving path's own cost (the GPU's regime). Each server's scores were "
        f"first checked against in-process `predict`. Source: `docs/results/{SITTING.name}`."
    )
    for model in models:
        parts += ["", table(rows, model), "", ratios(rows, model)]
    parts += ["", runtimes_table(rows), "", overload_section(), "", quality_section()]
    return "\n".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
