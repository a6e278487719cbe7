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
(``rerank_tools.benchmark.runtimes``). ``--infinity`` sweeps the peer, Infinity, started here from its
own venv once per listed dtype (``rerank_tools.benchmark.infinity_server``); ``--url-client infinity``
measures an Infinity already running at ``--url``. ``--cells`` picks cells (``10x1,10x32,100x8``:
documents x concurrency) instead of the grid; with it the ceiling is measured per document count.
``--check-scores N`` compares every target's scores on N requests with in-process ``predict``.

``--mix GROUP`` (repeated) measures mixed traffic instead of the sweep: every group at once against
``--url``'s ``/rerank`` for ``--duration`` seconds, each with its own API key, documents per request
and closed-loop clients, reported per group (``rerank_tools.benchmark.mix``). A group is
``NAME:docs=N,clients=N[,key_env=VAR][,class=interactive|bulk][,resend=retry-after|now][,start=S]``:
``key_env`` names the environment variable holding its bearer key (left out: no ``Authorization``;
the key is never written), ``class`` is sent as ``X-Rerank-Class``, ``resend=now`` resends at once
after a refusal instead of waiting what ``Retry-After`` says, and ``start`` delays the group by S
seconds. ``--mix-alone`` first runs each group alone and adds mixed/alone ratios to the ``mix``
summary.

Examples::

    rerank-bench --url http://127.0.0.1:8000 --ceiling --naive \\
        --model-dir models/bench-minilm-l6-cross-encoder --concurrency 1,4,16,32,64 --docs 10,100
    rerank-bench --url http://127.0.0.1:8011 --duration 30 --mix-alone \\
        --mix interactive:docs=10,clients=1,key_env=RERANK_KEY_A,class=interactive \\
        --mix bulk:docs=100,clients=16,key_env=RERANK_KEY_B,class=bulk \\
        --mix storm:docs=10,clients=64,key_env=RERANK_KEY_C,resend=now,start=10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from rerank_core.errors import BackendUnavailable, RerankError
from rerank_tools.benchmark.args import build_parser
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
)
from rerank_tools.benchmark.mix import group_keys, measure_mix
from rerank_tools.benchmark.naive_server import NaiveServer
from rerank_tools.benchmark.overload import measure_overload
from rerank_tools.benchmark.plot import plot_sweep
from rerank_tools.benchmark.runtimes import load_runtimes, measure_runtimes
from rerank_tools.benchmark.scores import predict_reference
from rerank_tools.benchmark.sweep import Emit, Target, grid, measure, sweep_infinity
from rerank_tools.conditions import conditions
from rerank_tools.evaluation.loaders import DatasetError

#: The cell the naive comparison is reported at, and the request the latency comparison uses.
NAIVE_CELL = (32, 10)
LATENCY_DOCS = 100


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
    args: argparse.Namespace, traffic: dict[int, list[RequestSample]], emit: Emit, model: Any
) -> tuple[BatchMeasurement, float | None, dict[int, float]]:
    """The ceiling over the sweep's own pairs, the in-process time of one 100-doc request, and the
    ceiling each cell is compared with: with ``--cells``, measured on that document count's pairs
    (short requests have shorter pairs), else the one ceiling over all pairs."""
    if args.cells:
        per_docs: dict[int, float] = {}
        tops = []
        for docs, samples in traffic.items():
            pairs = [p for s in samples for p in s.pairs]
            measurements = measure_ceiling(
                model, pairs[: args.ceiling_pairs], args.ceiling_batch_sizes, args.ceiling_max_s
            )
            for m in measurements:
                emit({**m.to_dict(), "docs_per_request": docs})
            top = best(measurements)
            emit({**top.to_dict(), "kind": "ceiling_best", "docs_per_request": docs})
            per_docs[docs] = top.pairs_per_s
            tops.append(top)
        top = best(tops)
    else:
        pairs = [p for samples in traffic.values() for s in samples for p in s.pairs]
        measurements = measure_ceiling(
            model, pairs[: args.ceiling_pairs], args.ceiling_batch_sizes, args.ceiling_max_s
        )
        for m in measurements:
            emit(m.to_dict())
        top = best(measurements)
        emit({**top.to_dict(), "kind": "ceiling_best"})
        per_docs = dict.fromkeys(traffic, top.pairs_per_s)
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
    return top, request_s, per_docs


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
    if not (args.url or args.naive or args.ceiling or args.runtimes or args.infinity):
        parser.error("nothing to measure: give --url, --naive, --ceiling, --infinity and/or --runtimes")
    url = None
    if args.url:
        try:
            url = check_loopback(args.url)
        except ValueError as exc:
            parser.error(str(exc))
    needs_model = args.naive or args.ceiling or args.runtimes or args.infinity or args.check_scores
    if needs_model and not args.model_dir.is_dir():
        parser.error(f"--model-dir {args.model_dir} is not a directory")
    mix_keys = _check_mix(args, parser)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "").strip() or None
        if api_key is None:
            parser.error(f"environment variable {args.api_key_env} is empty or unset")
    deadline = time.monotonic() + args.max_total_s
    out_dir = args.output_dir or Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = args.candidates or args.data_dir / "trec-dl20" / "candidates.jsonl"
    cells = grid(args)

    with (out_dir / "results.jsonl").open("w") as results_file:
        emit = Reporter(stdout, results_file)
        emit(
            {
                "kind": "config",
                "url": url,
                "label": args.label if url else None,
                "model": args.model,
                "concurrency": args.concurrency,
                "docs": args.docs,
                "cells": [list(c) for c in args.cells] if args.cells else None,
                "duration_s": args.duration,
                "max_requests": args.max_requests,
                "torch_threads": args.threads,
                "cpu_count": os.cpu_count(),
                "model_dir": str(args.model_dir) if needs_model else None,
                "runtimes": args.runtimes,
                "infinity": args.infinity,
                "mix": [g.to_dict() for g in args.mix] if args.mix else None,
                "candidates": str(candidates),
                # The machine and versions, so a figure never needs the page to say where it ran.
                "machine": conditions(),
            }
        )
        traffic = {
            d: load_traffic(candidates, d, args.samples, seed=args.seed + d)
            for d in dict.fromkeys(docs for docs, _ in cells)
        }
        if args.runtimes:
            _runtime_sweep(args, candidates, emit)
        in_process = args.ceiling or args.check_scores
        model = load_cross_encoder(args.model_dir, args.threads) if in_process else None
        ceiling, request_s, ceilings = (
            _measure_ceiling(args, traffic, emit, model) if args.ceiling else (None, None, {})
        )
        reference = predict_reference(model) if args.check_scores else None
        served: list[CellResult] = []
        if url and args.mix:
            _preflight(url)
            mix_traffic = {
                d: load_traffic(candidates, d, args.samples, seed=args.seed + d)
                for d in dict.fromkeys(g.docs for g in args.mix)
            }
            measure_mix(
                url, args.mix, mix_traffic, mix_keys, emit, duration_s=args.duration,
                alone=args.mix_alone, warmup_requests=args.warmup, timeout_s=args.timeout,
                model=args.model, top_n=args.top_n,
            )  # fmt: skip
        elif url and args.overload:
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
            target = Target(args.label, url, args.url_client, args.model)
            served = measure(target, traffic, args, deadline, emit, ceilings, reference, api_key)
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
                naive = measure(
                    Target("naive", server.url), traffic, args, deadline, emit, ceilings, reference
                )
        peers: list[CellResult] = []
        for dtype in args.infinity or []:
            if deadline - time.monotonic() <= 1.0:
                break
            peers += sweep_infinity(dtype, traffic, args, deadline, emit, ceilings, reference, out_dir)
        emit(_comparison(served, naive, ceiling, request_s))
        swept = [*served, *naive, *peers]
        # A runtime-only run has no cells to plot.
        plot = (
            plot_sweep(swept, out_dir / "sweep.png", ceiling.pairs_per_s if ceiling else None)
            if swept
            else None
        )
        summary = {
            "kind": "summary",
            "cells": len(swept),
            "errors": sum(c.errors for c in swept),
            "torch_threads": args.threads,
            "results_file": str(out_dir / "results.jsonl"),
            "plot": str(plot) if plot else None,
        }
        emit(summary)
    return summary


def _check_mix(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, str]:
    """The ``--mix`` groups' keys, by group; a parser error for a mix that cannot run."""
    if not args.mix:
        if args.mix_alone:
            parser.error("--mix-alone needs --mix groups")
        return {}
    if not args.url:
        parser.error("--mix needs --url")
    if args.overload:
        parser.error("--mix and --overload are separate runs: give one")
    if args.url_client != "service":
        parser.error("--mix speaks the service's own /rerank: leave --url-client at service")
    names = [g.name for g in args.mix]
    if len(set(names)) < len(names):
        parser.error(f"--mix: group names must differ, not {', '.join(names)}")
    for group in args.mix:
        if group.start_s >= args.duration:
            parser.error(
                f"--mix {group.name}: start={group.start_s:g} is not before --duration {args.duration:g}"
            )
    try:
        return group_keys(args.mix)
    except ValueError as exc:
        parser.error(str(exc))


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
    parser = build_parser(__doc__.split("\n\n")[0] if __doc__ else None)
    args = parser.parse_args(argv)
    try:
        run(args, parser, sys.stdout)
    except (DatasetError, RerankError) as exc:
        print(f"rerank-bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
