"""``rerank-bench``: load benchmark of a running reranking service on this machine.

Sweeps concurrency x documents per request against ``--url`` (loopback only) with real trec-dl20
query/passage traffic and, on request, measures in the same run the in-process ceiling of the same
cross-encoder (``--ceiling``) and a naive one-predict-per-request FastAPI server (``--naive``, started
and stopped here). Every measurement is a JSON line on stdout and in ``results.jsonl``; the last
line is a ``summary`` object. ``sweep.png`` plots throughput and latency against concurrency.
Everything is bounded: each cell by ``--duration`` and ``--max-requests``, the run by
``--max-total-s``. ``--runtimes`` adds the in-process throughput of the same model in each listed
runtime (onnx, onnx-int8, openvino, openvino-int8, torch-bf16, openvino-bf16, ...) with
torch fp32's in the same run
(``rerank_tools.benchmark.runtimes``).

Example::

    rerank-bench --url http://127.0.0.1:8000 --ceiling --naive \\
        --model-dir models/bench-minilm-l6-cross-encoder --concurrency 1,4,16,32,64 --docs 10,100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from rerank_core.errors import BackendUnavailable, RerankError
from rerank_tools.benchmark.ceiling import (
    BatchMeasurement,
    best,
    load_cross_encoder,
    measure_ceiling,
    time_request,
)
from rerank_tools.benchmark.loadgen import (
    CellResult,
    RequestSample,
    check_loopback,
    load_traffic,
    run_cell,
)
from rerank_tools.benchmark.naive_server import NaiveServer
from rerank_tools.benchmark.overload import measure_overload
from rerank_tools.benchmark.plot import plot_sweep
from rerank_tools.benchmark.runtimes import load_runtimes, measure_runtimes, runtime_labels
from rerank_tools.evaluation.loaders import DatasetError

Emit = Callable[[dict[str, Any]], None]

#: The cell the naive comparison is reported at, and the request the latency comparison uses.
NAIVE_CELL = (32, 10)
LATENCY_DOCS = 100


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    target = parser.add_argument_group("the served service")
    target.add_argument("--url", help="base URL of the running service (127.0.0.1/localhost only)")
    target.add_argument("--model", help="route or backend name to ask for")
    target.add_argument("--api-key-env", help="environment variable holding the service API key")

    sweep = parser.add_argument_group("the sweep")
    sweep.add_argument("--concurrency", type=_ints, default=[1, 4, 16, 32, 64])
    sweep.add_argument("--docs", type=_ints, default=[10, 100], help="documents per request")
    sweep.add_argument("--duration", type=float, default=10.0, help="seconds per cell")
    sweep.add_argument("--max-requests", type=int, default=5000, help="requests per cell")
    sweep.add_argument("--warmup", type=int, default=2, help="unmeasured requests per cell")
    sweep.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    sweep.add_argument("--top-n", type=int, default=None, help="top_n sent (default: all)")
    sweep.add_argument("--max-total-s", type=float, default=1800.0, help="cap on the whole run")
    sweep.add_argument("--samples", type=int, default=256, help="distinct requests per docs size")
    sweep.add_argument("--seed", type=int, default=0)

    data = parser.add_argument_group("traffic")
    data.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("RERANK_SHARED_DATA", "../shared/data")),
    )
    data.add_argument("--candidates", type=Path, help="default: <data-dir>/trec-dl20/candidates.jsonl")

    model = parser.add_argument_group("in-process ceiling and naive baseline")
    model.add_argument("--model-dir", type=Path, default=Path("models/bench-minilm-l6-cross-encoder"))
    model.add_argument("--ceiling", action="store_true", help="measure the in-process ceiling")
    model.add_argument("--ceiling-batch-sizes", type=_ints, default=[8, 16, 32, 64])
    model.add_argument("--ceiling-pairs", type=int, default=1024, help="pairs per batch size")
    model.add_argument("--ceiling-max-s", type=float, default=30.0, help="seconds per batch size")
    model.add_argument("--naive", action="store_true", help="sweep the naive FastAPI baseline too")
    model.add_argument("--naive-startup-s", type=float, default=180.0)
    model.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (ceiling, naive)"
    )
    runtimes = parser.add_argument_group("runtime sweep (in-process, same model and requests)")
    runtimes.add_argument(
        "--runtimes",
        type=runtime_labels,
        help="e.g. onnx,onnx-int8,openvino,openvino-int8,openvino-int8-static "
        "(torch is always measured as the baseline)",
    )
    runtimes.add_argument("--runtime-docs", type=int, default=100, help="documents per request")
    runtimes.add_argument("--runtime-max-s", type=float, default=60.0, help="seconds for the sweep")
    runtimes.add_argument("--export-cache-dir", type=Path, help="where exports go (default: as configured)")
    overload = parser.add_argument_group("goodput under overload (against --url, instead of the sweep)")
    overload.add_argument("--overload", action="store_true",
                          help="the unloaded rate, then --overload-clients that resend at once after "
                          "a refusal: goodput within --deadline as a share of the unloaded rate")  # fmt: skip
    overload.add_argument("--overload-clients", type=int, default=64)
    overload.add_argument("--overload-base", type=int, default=8, help="clients of the unloaded cell")
    overload.add_argument("--deadline", type=float, default=60.0,
                          help="seconds past which an answer no longer counts (the deadline)")  # fmt: skip
    parser.add_argument("--output-dir", type=Path, help="default: ./runs/bench-<timestamp>/")
    return parser


class Reporter:
    """Writes each record as one JSON line to stdout and to ``results.jsonl``."""

    def __init__(self, stream: TextIO, file: TextIO) -> None:
        self.stream = stream
        self.file = file

    def __call__(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        for out in (self.stream, self.file):
            out.write(line + "\n")
            out.flush()


def _sweep(
    url: str,
    target: str,
    traffic: dict[int, list[RequestSample]],
    args: argparse.Namespace,
    deadline: float,
    emit: Emit,
    ceiling: float | None,
    api_key: str | None = None,
) -> list[CellResult]:
    """Every (docs, concurrency) cell against ``url``, each cut to the time left."""
    cells = []
    for docs, samples in traffic.items():
        for concurrency in args.concurrency:
            left = deadline - time.monotonic()
            if left < 1.0:
                emit(
                    {
                        "kind": "cell_skipped",
                        "target": target,
                        "concurrency": concurrency,
                        "docs_per_request": docs,
                        "reason": "--max-total-s reached",
                    }
                )
                continue
            cell = asyncio.run(
                run_cell(
                    url,
                    samples,
                    concurrency,
                    target=target,
                    duration_s=min(args.duration, left),
                    max_requests=args.max_requests,
                    warmup_requests=args.warmup,
                    timeout_s=args.timeout,
                    model=args.model if target == "served" else None,
                    top_n=args.top_n,
                    api_key=api_key,
                )
            )
            record = cell.to_dict()
            if ceiling:
                record["vs_ceiling"] = cell.pairs_per_s / ceiling
            emit(record)
            cells.append(cell)
    return cells


def _cell(cells: Sequence[CellResult], concurrency: int, docs: int) -> CellResult | None:
    return next((c for c in cells if c.concurrency == concurrency and c.docs_per_request == docs), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _comparison(
    served: Sequence[CellResult],
    naive: Sequence[CellResult],
    ceiling: BatchMeasurement | None,
    in_process_request_s: float | None,
) -> dict[str, Any]:
    """The headline ratios: served/ceiling, served/naive at ``NAIVE_CELL``, and the 100-doc
    concurrency-1 latency against the in-process time for those pairs."""
    best_served = max(served, key=lambda c: c.pairs_per_s, default=None)
    s_cell, n_cell = _cell(served, *NAIVE_CELL), _cell(naive, *NAIVE_CELL)
    s_lat, n_lat = _cell(served, 1, LATENCY_DOCS), _cell(naive, 1, LATENCY_DOCS)
    return {
        "kind": "comparison",
        "served_best_pairs_per_s": best_served.pairs_per_s if best_served else None,
        "served_best_cell": (
            [best_served.concurrency, best_served.docs_per_request] if best_served else None
        ),
        "ceiling_pairs_per_s": ceiling.pairs_per_s if ceiling else None,
        "served_over_ceiling": _ratio(
            best_served.pairs_per_s if best_served else None,
            ceiling.pairs_per_s if ceiling else None,
        ),
        "naive_cell": list(NAIVE_CELL),
        "served_over_naive": _ratio(
            s_cell.requests_per_s if s_cell else None, n_cell.requests_per_s if n_cell else None
        ),
        "latency_c1_d100_ms": {
            "served_p50": s_lat.p50_ms if s_lat else None,
            "naive_p50": n_lat.p50_ms if n_lat else None,
            "in_process": in_process_request_s * 1000 if in_process_request_s else None,
        },
    }


def _measure_ceiling(
    args: argparse.Namespace, traffic: dict[int, list[RequestSample]], emit: Emit
) -> tuple[BatchMeasurement, float | None]:
    """The ceiling over the sweep's own pairs, and the in-process time of one 100-doc request."""
    model = load_cross_encoder(args.model_dir, args.threads)
    pairs = [p for samples in traffic.values() for s in samples for p in s.pairs]
    measurements = measure_ceiling(
        model, pairs[: args.ceiling_pairs], args.ceiling_batch_sizes, args.ceiling_max_s
    )
    for m in measurements:
        emit(m.to_dict())
    top = best(measurements)
    emit({**top.to_dict(), "kind": "ceiling_best"})
    request = traffic[LATENCY_DOCS][0] if LATENCY_DOCS in traffic else None
    request_s = time_request(model, request.pairs, top.batch_size) if request else None
    if request_s is not None:
        emit(
            {
                "kind": "in_process_request",
                "docs": LATENCY_DOCS,
                "seconds": request_s,
                "batch_size": top.batch_size,
            }
        )
    return top, request_s


def _runtime_sweep(args: argparse.Namespace, candidates: Path, emit: Emit) -> None:
    """In-process pairs/s of each runtime on the same ``--runtime-docs`` requests, and its ratio to
    torch's in the same run."""
    import torch

    torch.set_num_threads(args.threads)
    samples = load_traffic(candidates, args.runtime_docs, args.samples, seed=args.seed)
    backends = load_runtimes(args.model_dir, args.runtimes, args.export_cache_dir)
    results = measure_runtimes(backends, [s.pairs for s in samples], args.runtime_max_s)
    for measurement in results.values():
        emit({**measurement.to_dict(results["torch"]), "docs_per_request": args.runtime_docs})


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, stdout: TextIO) -> dict[str, Any]:
    """The whole benchmark; returns the summary record (also the last line written)."""
    if not (args.url or args.naive or args.ceiling or args.runtimes):
        parser.error("nothing to measure: give --url, --naive, --ceiling and/or --runtimes")
    url = None
    if args.url:
        try:
            url = check_loopback(args.url)
        except ValueError as exc:
            parser.error(str(exc))
    if (args.naive or args.ceiling or args.runtimes) and not args.model_dir.is_dir():
        parser.error(f"--model-dir {args.model_dir} is not a directory")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "").strip() or None
        if api_key is None:
            parser.error(f"environment variable {args.api_key_env} is empty or unset")
    deadline = time.monotonic() + args.max_total_s
    out_dir = args.output_dir or Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = args.candidates or args.data_dir / "trec-dl20" / "candidates.jsonl"

    with (out_dir / "results.jsonl").open("w") as results_file:
        emit = Reporter(stdout, results_file)
        emit(
            {
                "kind": "config",
                "url": url,
                "model": args.model,
                "concurrency": args.concurrency,
                "docs": args.docs,
                "duration_s": args.duration,
                "max_requests": args.max_requests,
                "torch_threads": args.threads,
                "cpu_count": os.cpu_count(),
                "model_dir": str(args.model_dir) if (args.naive or args.ceiling or args.runtimes) else None,
                "runtimes": args.runtimes,
                "candidates": str(candidates),
            }
        )
        traffic = {d: load_traffic(candidates, d, args.samples, seed=args.seed + d) for d in args.docs}
        if args.runtimes:
            _runtime_sweep(args, candidates, emit)
        ceiling, request_s = _measure_ceiling(args, traffic, emit) if args.ceiling else (None, None)
        ceiling_rate = ceiling.pairs_per_s if ceiling else None
        served: list[CellResult] = []
        if url and args.overload:
            _preflight(url)
            for samples in traffic.values():
                result = measure_overload(
                    url, samples, clients=args.overload_clients, base_concurrency=args.overload_base,
                    duration_s=args.duration, deadline_s=args.deadline, timeout_s=args.timeout,
                    model=args.model, api_key=api_key,
                )  # fmt: skip
                emit(result.to_dict())
        elif url:
            _preflight(url)
            served = _sweep(url, "served", traffic, args, deadline, emit, ceiling_rate, api_key)
        naive: list[CellResult] = []
        if args.naive and deadline - time.monotonic() > 1.0:
            server = NaiveServer(
                args.model_dir,
                args.threads,
                startup_timeout_s=min(args.naive_startup_s, deadline - time.monotonic()),
                log_path=out_dir / "naive_server.log",
            )
            with server:
                emit(
                    {
                        "kind": "naive_server",
                        "url": server.url,
                        "pid": server.pid,
                        "torch_threads": args.threads,
                    }
                )
                naive = _sweep(server.url, "naive", traffic, args, deadline, emit, ceiling_rate)
        emit(_comparison(served, naive, ceiling, request_s))
        # A runtime-only run has no cells to plot.
        plot = plot_sweep([*served, *naive], out_dir / "sweep.png", ceiling_rate) if served or naive else None
        summary = {
            "kind": "summary",
            "cells": len(served) + len(naive),
            "errors": sum(c.errors for c in [*served, *naive]),
            "torch_threads": args.threads,
            "results_file": str(out_dir / "results.jsonl"),
            "plot": str(plot) if plot else None,
        }
        emit(summary)
    return summary


def _preflight(url: str) -> None:
    """Fail fast when nothing listens at ``url`` (any HTTP answer, even an error, will do)."""
    try:
        httpx.get(url + "/health", timeout=10.0)
    except httpx.TransportError as exc:
        raise BackendUnavailable(
            f"nothing answers at {url} ({type(exc).__name__})", backend="served"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rerank-bench``; exit status 1 when a measurement cannot be made."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args, parser, sys.stdout)
    except (DatasetError, RerankError) as exc:
        print(f"rerank-bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
