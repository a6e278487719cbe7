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

from rerank_tools.benchmark.sitting import table

#: The repository's docs/ (the lab is installed from a clone: lab/rerank_tools/benchmark/page.py).
DOCS = Path(__file__).resolve().parents[3] / "docs"
#: The sitting the page's side-by-side tables come from (``run_sitting.sh``'s sitting.json).
SITTING = DOCS / "results" / "sitting-2026-12-07.json"
#: The service target compared with the peer, per model: the configuration a user would pick.
SERVICE_FOR = {"near-free": "service-fast-haproxy", "bench": "service-fast-haproxy"}
#: In-process throughput of each runtime on the benchmark model (``rerank-bench --runtimes``),
#: measured on the same quiet machine right after the sitting.
RUNTIMES = DOCS / "results" / "runtimes-2026-12-07.jsonl"
#: Goodput under overload (``run_served.sh --overload``), serve_bench.yaml as shipped.
OVERLOAD = DOCS / "results" / "overload-2026-12-06b.jsonl"
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

2 CPU cores (AMD EPYC with AVX512-BF16, no AMX), 24 GiB, no GPU, Python 3.11, torch 2.13.0 (CPU),
Ray 2.60.0. The machine is shared and noisy: compare figures within one sitting (every server
alone, one after another), never across sittings. No GPU figure yet: `scripts/gpu_check.sh` is the
prepared GPU run, and it has not had a GPU to run on.
"""

QUALITY = """\
## Quality: `rerank-eval`

TREC DL 2020 passage task (54 queries, BM25 top-100, NIST judgments; `../shared/data`), metrics by
ir-measures. `rerank-eval --dataset trec-dl20 --data-dir ../shared/data` (in-process) and the same
with `--url http://127.0.0.1:8000 --model default` (through `make run`):

| TREC DL 2020, BM25 top-100 | nDCG@10 | MRR@10 | R@10 | R@100 |
| --- | --- | --- | --- | --- |
| BM25 order (first stage, as given) | 0.4796 | 0.6533 | 0.2467 | 0.5599 |
| all-MiniLM-L6-v2 bi-encoder, in-process | 0.6081 | 0.7851 | 0.3189 | 0.5599 |
| all-MiniLM-L6-v2 bi-encoder, through the service | 0.6081 | 0.7851 | 0.3189 | 0.5599 |

Serving does not change scores (`tests/serving/test_eval_service.py`). Each runtime's agreement
with torch fp32 and its speed in-process: [choosing-a-reranker.md](choosing-a-reranker.md).
"""

DECISIONS = """\
## Measured, and what lost

Each a one-change A/B on this machine, the two sides alternated in one sitting (15 s cells,
`benchmarks/serve_fast.yaml` with the service alone). Only the ratios count.

**OpenVINO streams** (`streams`, shipped: left out, OpenVINO's throughput hint runs two passes at
once of one thread each on a 2-thread replica). Against `streams: 1` (one pass on both threads),
pairs/s:

| model | 10 x C1 | 10 x C32 | 100 x C8 |
|---|---|---|---|
| bench, streams (default) | 99.0 (p50 98 ms) | 121.1 | 128.3 |
| bench, `streams: 1` | 85.3 (p50 114 ms) | 90.8 | 109.7 |
| near-free, streams (default) | 810 (p50 11.9 ms) | 2,140 | 4,079 |
| near-free, `streams: 1` | 779 (p50 12.2 ms) | 1,614 | 3,258 |

One pass on two threads waits for the slower thread, and on a shared machine one of them is often
held up; with streams a held-up thread delays only its own pass. In-process (no neighbours) the
streams gain about 5 %.

**Where tokenizing runs** (kept: in the model replica, on its tokenizer thread). Tokenizing costs
about 120 µs of CPU a pair (MiniLM's WordPiece, DL20 passages, the Rust core on one thread), next
to about 160 µs for the near-free model's forward pass on this CPU. A prototype that tokenized in
the Router and sent the token ids with the request (the replica then only looked them up) against
the shipped replica, near-free model, two rounds: 10 x C32 -6 % and -1 %, 100 x C8 +3 % and +18 %:
within this machine's noise, as the work only moves between processes on the same two cores. The
upper bound (the replica given every pair's ids for free, no Router cost): +33 % to +79 %. So on a
CPU node tokenizing stays where the engine's windows, cache and batches are; on a GPU node, where
the replica's CPUs do little else, it runs on the tokenizer's pool of the replica's `num_cpus`
threads (80 µs a pair on two threads against 134 on one), so one GPU's share of a node's cores
keeps up with the model rather than one thread capping it.
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
    records = [json.loads(line) for line in RUNTIMES.read_text().splitlines() if line.strip()]
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
    """Goodput of clients that resend at once after a refusal, as a share of the unloaded rate."""
    r = json.loads(OVERLOAD.read_text().splitlines()[0])
    return "\n".join(
        [
            "## Overload: goodput when clients resend at once",
            "",
            "`CONFIG=benchmarks/serve_bench.yaml SERVICE_ONLY=1 benchmarks/run_served.sh --overload "
            "--docs 100 --duration 60 --deadline 60`: the benchmark model (torch fp32) unloaded at "
            f"{r['unloaded_concurrency']} clients, then {r['clients']} clients of "
            f"{r['docs_per_request']}-document requests that resend at once after a refusal; "
            f"goodput counts answers within {r['deadline_s']:g} s. Source: `docs/results/{OVERLOAD.name}`.",
            "",
            "| unloaded pairs/s | goodput pairs/s | share | answered (late) | refused | slowest refusal | "
            "answered p99 | client time-outs |",
            "|---|---|---|---|---|---|---|---|",
            f"| {r['unloaded_pairs_per_s']:.1f} | {r['goodput_pairs_per_s']:.1f} | "
            f"{r['goodput_share']:.2f} | {r['answered']} ({r['answered_late']}) | {r['refused']:,} | "
            f"{r['refused_max_ms']:,.0f} ms | {r['answered_p99_ms'] / 1000:.1f} s | "
            f"{r['client_timeouts']} |",
        ]
    )


def render() -> str:
    """The whole page."""
    rows: list[dict[str, Any]] = json.loads(SITTING.read_text())
    models = list(dict.fromkeys(r["model"] for r in rows))
    parts = [HEADER, "## Side by side with the peer, one sitting", ""]
    parts.append(
        "TREC DL20 traffic, closed loop, 10 or 100 documents a request at C requests in flight; "
        "pairs/s, and p50 / p99 latency. `bench`: a cross-encoder with MiniLM-L6's compute "
        "(`make bench-model`); `near-free`: 1 layer, hidden 32, the same tokenizer, so what is "
        "measured is the serving path's own cost (the GPU's regime). Each server's scores were "
        f"first checked against in-process `predict`. Source: `docs/results/{SITTING.name}`."
    )
    for model in models:
        parts += ["", table(rows, model), "", ratios(rows, model)]
    parts += ["", runtimes_table(rows), "", DECISIONS, overload_section(), "", QUALITY]
    return "\n".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
