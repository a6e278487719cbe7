"""Sweeping one target: its score check, then every cell of the run, each cut to the time left; and
the peer, Infinity, started, swept and stopped one dtype at a time."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_tools.benchmark.infinity_server import InfinityServer
from rerank_tools.benchmark.loadgen import CellResult, ClientKind, RequestSample, run_cell
from rerank_tools.benchmark.scores import Reference, check_scores

Emit = Callable[[dict[str, Any]], None]


def grid(args: argparse.Namespace) -> list[tuple[int, int]]:
    """The (documents, concurrency) cells of the run, in the order they are swept."""
    if args.cells:
        return list(args.cells)
    return [(docs, concurrency) for docs in args.docs for concurrency in args.concurrency]


@dataclass(frozen=True, slots=True)
class Target:
    """A server to sweep: its name in the records, URL, request shape and the model name to ask."""

    name: str
    url: str
    client: ClientKind = "service"
    model: str | None = None


def sweep(
    target: Target,
    traffic: dict[int, list[RequestSample]],
    args: argparse.Namespace,
    deadline: float,
    emit: Emit,
    ceilings: dict[int, float],
    api_key: str | None = None,
) -> list[CellResult]:
    """Every cell against ``target``, each cut to the time left."""
    cells = []
    for docs, concurrency in grid(args):
        left = deadline - time.monotonic()
        if left < 1.0:
            emit(
                {
                    "kind": "cell_skipped",
                    "target": target.name,
                    "concurrency": concurrency,
                    "docs_per_request": docs,
                    "reason": "--max-total-s reached",
                }
            )
            continue
        cell = asyncio.run(
            run_cell(
                target.url,
                traffic[docs],
                concurrency,
                target=target.name,
                duration_s=min(args.duration, left),
                max_requests=args.max_requests,
                warmup_requests=args.warmup,
                timeout_s=args.timeout,
                model=target.model,
                top_n=args.top_n,
                api_key=api_key,
                client=target.client,
            )
        )
        record = cell.to_dict()
        if ceilings.get(docs):
            record["vs_ceiling"] = cell.pairs_per_s / ceilings[docs]
        emit(record)
        cells.append(cell)
    return cells


def measure(
    target: Target,
    traffic: dict[int, list[RequestSample]],
    args: argparse.Namespace,
    deadline: float,
    emit: Emit,
    ceilings: dict[int, float],
    reference: Reference | None,
    api_key: str | None = None,
) -> list[CellResult]:
    """``target``'s score check (when asked for), then its sweep."""
    if reference is not None:
        samples = traffic[grid(args)[0][0]][: args.check_scores]
        emit(
            check_scores(
                target.url,
                target.client,
                samples,
                reference,
                target=target.name,
                model=target.model,
                api_key=api_key,
                timeout_s=args.timeout,
            )
        )
    return sweep(target, traffic, args, deadline, emit, ceilings, api_key)


def sweep_infinity(
    dtype: str,
    traffic: dict[int, list[RequestSample]],
    args: argparse.Namespace,
    deadline: float,
    emit: Emit,
    ceilings: dict[int, float],
    reference: Reference | None,
    out_dir: Path,
) -> list[CellResult]:
    """Start Infinity with ``dtype`` weights, check and sweep it, stop it: one server at a time."""
    server = InfinityServer(
        args.model_dir,
        dtype,
        venv=args.infinity_venv,
        batch_size=args.infinity_batch_size,
        startup_timeout_s=min(args.infinity_startup_s, deadline - time.monotonic()),
        log_path=out_dir / f"infinity-{dtype}.log",
    )
    with server:
        emit(
            {
                "kind": "infinity_server",
                "url": server.url,
                "pid": server.pid,
                "dtype": dtype,
                "command": server.command(server.port),
            }
        )
        target = Target(f"infinity-{dtype}", server.url, "infinity", server.model)
        return measure(target, traffic, args, deadline, emit, ceilings, reference)
