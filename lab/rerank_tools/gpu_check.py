"""GPU check of the served cross-encoder: does its replica land on the GPU, and how many pairs/s.

Run through ``scripts/gpu_check.sh`` on a machine with an NVIDIA GPU (about three minutes):

1. builds the benchmark cross-encoder offline (``rerank_tools.bench_model``: the compute
   of ms-marco-MiniLM-L-6-v2) unless ``--model`` names one;
2. starts a local Ray (token auth disabled) and deploys the application with
   ``deployments.app.build_app``, that model as a ``cross_encoder`` backend with ``num_gpus: 1``;
3. checks through ``GET /health`` and ``GET /v1/stats`` that the replica runs on CUDA;
4. for each batch size, redeploys with that ``max_batch_size`` and drives concurrent HTTP load
   (``--docs-per-request`` documents a request) from client processes, printing pairs/s, latency
   and the batch sizes the replica actually formed;
5. redeploys at ``--long-batch-size`` and drives ``--long-docs``-document requests with few in
   flight, printing pairs/s and p99 against the target (8,000 pairs/s at p99 < 100 ms on one H100
   for 100-document requests);
6. after Serve is shut down, measures in this process on the same device: ``CrossEncoder.predict``
   at the same batch sizes; fp32 against fp16 and bf16 (pairs/s, and each one's order against
   fp32's: mean Kendall tau over queries of 100 passages, largest score difference); the service's
   own backend over 100-document requests at several fixed ``batch_cost_tokens``, which shows the
   value that pays on the GPU (left out of a configuration, it is measured when the model loads).

Exit status: 0 when every check passed, 1 when no GPU is visible (without ``--allow-cpu``), 2 when
a check failed. ``--allow-cpu --quick`` runs the same path on CPU with the tiny test model: a smoke
test of this script where there is no GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_tools.latency import latency_summary

if TYPE_CHECKING:
    # Imported where the load runs: `--help` and the refusal without a GPU need neither httpx nor the
    # service's client.
    from rerank_tools.benchmark.loadgen import RequestSample, Tally

DEFAULT_MODEL_DIR = Path("models/bench-minilm-l6-cross-encoder")
BACKEND = "bench"
#: Words for synthetic queries and passages (MS MARCO passages average about 60 words).
_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his her are were which this be or "
    "an has had not but have it its one all new more first two city state county river school "
    "water energy protein cells blood heart cancer patients study results data model system "
    "price market company tax income law court rights history war army century population "
    "temperature climate rain soil plants species food diet vitamin calories sugar muscle"
)
WORDS = _WORD_TEXT.split()


def log(message: str) -> None:
    """One clear line on stdout, flushed at once (the script is watched while it runs)."""
    print(f"[gpu-check] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` shortens every phase and picks the near-free benchmark model and
    small batches."""
    p = argparse.ArgumentParser(
        description="Check that the Serve cross-encoder replica runs on the GPU and measure pairs/s "
        "through HTTP at several batch sizes, against in-process CrossEncoder.predict.",
    )
    p.add_argument("--model", type=Path, default=None,
                   help="cross-encoder directory (default: build the benchmark model into "
                   f"{DEFAULT_MODEL_DIR}; with --quick: the tiny test model)")
    p.add_argument("--batch-sizes", type=_int_list, default=None,
                   help="max_batch_size values to serve with, comma-separated "
                   "(default 16,32,64,128; quick: 8,32)")
    p.add_argument("--docs-per-request", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=None,
                   help="requests in flight per client process (default 32; quick: 8)")
    p.add_argument("--client-procs", type=int, default=None,
                   help="client processes driving the load (default 4; quick: 1)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="measured seconds per batch size (default 12; quick: 3)")
    p.add_argument("--warmup-s", type=float, default=None,
                   help="unmeasured load before each measurement (default 3; quick: 1)")
    p.add_argument("--router-replicas", type=int, default=None,
                   help="Router replicas (default 2; quick: 1)")
    p.add_argument("--inprocess-pairs", type=int, default=None,
                   help="pairs scored per batch size in-process (default 16384; quick: 512)")
    p.add_argument("--long-docs", type=int, default=100,
                   help="documents a request in the latency phase (default 100)")
    p.add_argument("--long-concurrency", type=int, default=None,
                   help="latency phase: requests in flight per client process (default 2; quick: 1)")
    p.add_argument("--long-batch-size", type=int, default=None,
                   help="latency phase: max_batch_size (default 256; quick: 32)")
    p.add_argument("--batch-costs", type=_int_list, default=None,
                   help="batch_cost_tokens values for the backend in-process, comma-separated "
                   "(default 64,512,2048,8192)")
    p.add_argument("--port", type=int, default=0, help="Serve HTTP port on 127.0.0.1 (0: a free one)")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run on CPU when no GPU is visible instead of failing")
    p.add_argument("--quick", action="store_true",
                   help="short phases, the near-free model, small batches: a smoke test of this script")
    args = p.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "batch_sizes": [8, 32] if quick else [16, 32, 64, 128],
        "concurrency": 8 if quick else 32,
        "client_procs": 1 if quick else 4,
        "duration_s": 3.0 if quick else 12.0,
        "warmup_s": 1.0 if quick else 3.0,
        "router_replicas": 1 if quick else 2,
        "inprocess_pairs": 512 if quick else 16384,
        "long_concurrency": 1 if quick else 2,
        "long_batch_size": 32 if quick else 256,
        "batch_costs": [64, 2048] if quick else [64, 512, 2048, 8192],
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.docs_per_request, args.concurrency, args.client_procs, args.long_docs,
           args.long_concurrency, args.long_batch_size) < 1:
        p.error("--docs-per-request, --concurrency, --client-procs and the --long-* values must be "
                "at least 1")
    return args


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers separated by commas")
    return values


def pick_device(allow_cpu: bool) -> str:
    """``cuda`` when torch sees a GPU; ``cpu`` only with ``--allow-cpu``; otherwise exit 1."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        log(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}")
        return "cuda"
    if not allow_cpu:
        log("FAIL: no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
            "run on a GPU machine, or pass --allow-cpu for a CPU smoke test")
        sys.exit(1)
    log(f"no GPU: running on CPU (--allow-cpu); torch {torch.__version__}")
    return "cpu"


def prepare_model(args: argparse.Namespace, workdir: Path) -> Path:
    """The model directory: ``--model``, the near-free benchmark model (quick), or the benchmark
    model."""
    if args.model is not None:
        return args.model.resolve()
    if args.quick:
        from rerank_tools.bench_model import build_near_free

        return build_near_free(workdir / "near-free-cross-encoder")
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        log(f"building the benchmark cross-encoder into {DEFAULT_MODEL_DIR}")
        from rerank_tools.bench_model import build

        build(DEFAULT_MODEL_DIR)
    return DEFAULT_MODEL_DIR.resolve()


def service_config(
    model_dir: Path, max_batch_size: int, num_gpus: float, router_replicas: int
) -> dict[str, Any]:
    """One cross-encoder on one replica; only ``max_batch_size`` changes between runs."""
    return {
        "backends": {
            BACKEND: {
                "type": "cross_encoder",
                "model": str(model_dir),
                # Large enough that a batch of every size tried is one forward pass.
                "max_tokens_per_batch": 131072,
                "serving": {
                    "num_gpus": num_gpus,
                    "num_cpus": 1,
                    "min_replicas": 1,
                    "max_replicas": 1,
                    "max_ongoing_requests": 512,
                    "max_batch_size": max_batch_size,
                    "batch_wait_timeout_s": 0.005,
                },
            }
        },
        "routes": {"default": {"backends": [BACKEND], "retries": 0, "timeout_s": 60}},
        "default_route": "default",
        "router": {"num_cpus": 0.5, "num_replicas": router_replicas, "max_ongoing_requests": 1024},
    }


def synthetic_passages(n: int, seed: int = 7) -> list[str]:
    """``n`` seeded passages of 40 to 80 words, about MS MARCO's length."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(40, 80))) for _ in range(n)]


def synthetic_queries(n: int, seed: int = 11) -> list[str]:
    """``n`` seeded queries of 3 to 8 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 8))) for _ in range(n)]


def synthetic_requests(docs_per_request: int, seed: int, count: int = 256) -> list[RequestSample]:
    """``count`` seeded requests: a synthetic query with ``docs_per_request`` distinct passages."""
    from rerank_tools.benchmark.loadgen import RequestSample

    passages = synthetic_passages(400)
    queries = synthetic_queries(50)
    rng = random.Random(seed)
    return [
        RequestSample(rng.choice(queries), rng.sample(passages, docs_per_request)) for _ in range(count)
    ]


def client_process(
    url: str, docs_per_request: int, concurrency: int, warmup_s: float, duration_s: float, seed: int
) -> Tally:
    """One client process: the project's closed loop (``rerank_tools.benchmark.loadgen``) with
    ``concurrency`` requests in flight, ``warmup_s`` unmeasured, then ``duration_s`` measured."""
    from rerank_tools.benchmark.loadgen import measure

    samples = synthetic_requests(docs_per_request, seed)
    return asyncio.run(
        measure(
            url,
            samples,
            concurrency,
            duration_s=duration_s,
            max_requests=sys.maxsize,
            warmup_requests=0,
            warmup_s=warmup_s,
            timeout_s=60.0,
        )
    )


def run_load(
    url: str, args: argparse.Namespace, docs: int | None = None, concurrency: int | None = None
) -> Tally:
    """Load from ``--client-procs`` processes (one Python client saturates before Serve does),
    ``docs`` documents a request (default ``--docs-per-request``) and ``concurrency`` in flight in
    each (default ``--concurrency``); a degraded answer counts as an error."""
    from rerank_tools.benchmark.loadgen import Tally

    total = Tally()
    docs = docs or args.docs_per_request
    concurrency = concurrency or args.concurrency
    # spawn, not fork: this process runs Ray's threads.
    with ProcessPoolExecutor(args.client_procs, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(client_process, url, docs, concurrency, args.warmup_s, args.duration_s, seed)
            for seed in range(args.client_procs)
        ]
        for f in futures:
            total.merge(f.result())
    return total


def get_json(url: str) -> dict[str, Any]:
    """The JSON body of a GET, whatever its status (/health answers 503 with a body)."""
    import httpx

    return httpx.get(url, timeout=30).json()


def serve_phase(model_dir: Path, device: str, args: argparse.Namespace) -> tuple[dict[int, float], list[str]]:
    """Deploy once per batch size and measure over HTTP; returns pairs/s by size and failures."""
    import ray
    from ray import serve

    from deployments.app import build_app

    failures: list[str] = []
    throughput: dict[int, float] = {}
    num_gpus = 1 if device == "cuda" else 0
    ray.init(
        num_cpus=os.cpu_count(),
        num_gpus=num_gpus,
        include_dashboard=False,
        namespace="gpu-check",
        log_to_driver=False,
    )
    try:
        port = args.port or free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"

        def deploy(size: int) -> bool:
            t0 = time.perf_counter()
            config = service_config(model_dir, size, num_gpus, args.router_replicas)
            serve.run(build_app({"service": config}), name="rerank", route_prefix="/")
            log(f"deployed with max_batch_size={size} in {time.perf_counter() - t0:.1f}s")
            replica = get_json(url + "/health")["backends"][BACKEND]
            on_device = str(replica.get("device", ""))
            if replica.get("state") != "ready" or not on_device.startswith(device):
                failures.append(f"replica state {replica} (expected ready on {device})")
                log(f"FAIL: /health says {replica}")
                return False
            log(f"/health: replica ready on device {on_device!r}")
            return True

        for size in args.batch_sizes:
            if not deploy(size):
                break
            before = get_json(url + "/v1/stats")["models"][BACKEND]
            if not str(before["device"]).startswith(device) or before["max_batch_size"] != size:
                failures.append(f"/v1/stats {before} (expected {device}, max_batch_size {size})")
            load = run_load(url, args)
            seconds = load.elapsed_s
            after = get_json(url + "/v1/stats")["models"][BACKEND]
            batches = after["batches"] - before["batches"]
            pairs_scored = after["pairs"] - before["pairs"]
            ok, errors = len(load.latencies_s), sum(load.errors.values())
            latency = latency_summary(load.latencies_s)
            pairs_per_s = ok * args.docs_per_request / seconds
            throughput[size] = pairs_per_s
            log(
                f"RESULT serve  max_batch_size={size:4d}  pairs/s={pairs_per_s:9.0f}  "
                f"req/s={ok / seconds:7.1f}  p50={latency['p50_ms']:7.1f}ms  "
                f"p95={latency['p95_ms']:7.1f}ms  "
                f"mean batch={pairs_scored / max(batches, 1):6.1f} pairs  errors={errors}"
            )
            if errors or not ok:
                failures.append(f"max_batch_size={size}: {errors} errors of {ok + errors}; "
                                f"by type {dict(load.errors)}")
        if not failures and deploy(args.long_batch_size):
            long_phase(url, args, failures)
        serve.delete("rerank")
    finally:
        serve.shutdown()
        ray.shutdown()
    return throughput, failures


#: The target on one H100: 100-document requests at this many pairs/s, under this p99.
TARGET_PAIRS_PER_S, TARGET_P99_MS = 8000.0, 100.0


def long_phase(url: str, args: argparse.Namespace, failures: list[str]) -> None:
    """``--long-docs``-document requests, ``--long-concurrency`` in flight per client process:
    pairs/s and p99 against the target."""
    in_flight = args.long_concurrency * args.client_procs
    load = run_load(url, args, docs=args.long_docs, concurrency=args.long_concurrency)
    ok, errors = len(load.latencies_s), sum(load.errors.values())
    latency = latency_summary(load.latencies_s)
    pairs_per_s = ok * args.long_docs / load.elapsed_s
    log(
        f"RESULT serve-long  docs={args.long_docs}  in_flight={in_flight}  "
        f"max_batch_size={args.long_batch_size}  pairs/s={pairs_per_s:9.0f}  "
        f"p50={latency['p50_ms']:7.1f}ms  p99={latency['p99_ms']:7.1f}ms  errors={errors}"
    )
    met = pairs_per_s >= TARGET_PAIRS_PER_S and latency["p99_ms"] < TARGET_P99_MS
    log(
        f"TARGET {args.long_docs}-document requests: >= {TARGET_PAIRS_PER_S:.0f} pairs/s at p99 < "
        f"{TARGET_P99_MS:.0f} ms: {'met' if met else 'not met'} ({pairs_per_s:.0f} pairs/s, "
        f"p99 {latency['p99_ms']:.1f} ms with {in_flight} in flight)"
    )
    if errors or not ok:
        failures.append(f"{args.long_docs}-document requests: {errors} errors of "
                        f"{ok + errors}; by type {dict(load.errors)}")


def free_port() -> int:
    """A loopback port free at the time of asking."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inprocess_phase(model_dir: Path, device: str, args: argparse.Namespace) -> dict[int, float]:
    """``CrossEncoder.predict`` pairs/s in this process, fp16 on CUDA as the backend serves it."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), device=device)
    if device == "cuda":
        model.half()
    passages = synthetic_passages(400)
    queries = synthetic_queries(50)
    pairs = [(queries[i % len(queries)], passages[i % len(passages)]) for i in range(args.inprocess_pairs)]
    throughput: dict[int, float] = {}
    with torch.inference_mode():
        model.predict(pairs[: max(args.batch_sizes) * 2], batch_size=max(args.batch_sizes))  # warm-up
        for size in args.batch_sizes:
            t0 = time.perf_counter()
            model.predict(pairs, batch_size=size, show_progress_bar=False)
            elapsed = time.perf_counter() - t0
            throughput[size] = len(pairs) / elapsed
            log(f"RESULT in-process CrossEncoder.predict  batch_size={size:4d}  "
                f"pairs/s={throughput[size]:9.0f}")
    return throughput


def scoring_groups(n_queries: int, docs: int = 100) -> list[list[tuple[str, str]]]:
    """``n_queries`` seeded queries, each with ``docs`` passages: one request's pairs each."""
    passages = synthetic_passages(400)
    return [
        [(query, passages[(i * 37 + j) % len(passages)]) for j in range(docs)]
        for i, query in enumerate(synthetic_queries(n_queries))
    ]


def precision_phase(model_dir: Path, device: str, args: argparse.Namespace) -> dict[str, float]:
    """``CrossEncoder.predict`` in fp32, then in each half precision the device has (fp16 and bf16
    on CUDA, bf16 on CPU): pairs/s at the largest batch size, and each one's order against fp32's
    (mean and smallest Kendall tau over 100-passage queries, largest score difference)."""
    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    from rerank_tools.agreement import kendall_tau_b

    groups = scoring_groups(4 if args.quick else 32)
    pairs = [pair for group in groups for pair in group]
    size = max(args.batch_sizes)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device == "cuda":
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    throughput: dict[str, float] = {}
    reference: Any = None
    for label, dtype in dtypes.items():
        model = CrossEncoder(str(model_dir), device=device)
        model.model.to(dtype)
        with torch.inference_mode():
            model.predict(pairs[: size * 2], batch_size=size, show_progress_bar=False)  # warm-up
            t0 = time.perf_counter()
            scores = np.asarray(model.predict(pairs, batch_size=size, show_progress_bar=False), float)
            throughput[label] = len(pairs) / (time.perf_counter() - t0)
        order = ""
        if reference is None:
            reference = scores
        else:
            taus = [
                kendall_tau_b(reference[k : k + len(g)], scores[k : k + len(g)])
                for k, g in zip(range(0, len(pairs), len(groups[0])), groups, strict=True)
            ]
            order = (f"  mean tau vs fp32={np.mean(taus):.4f}  min={np.min(taus):.4f}  "
                     f"max |score diff|={np.max(np.abs(scores - reference)):.4f}")
        log(f"RESULT precision {label}  batch_size={size}  pairs/s={throughput[label]:9.0f}  "
            f"x fp32={throughput[label] / throughput['fp32']:5.2f}{order}")
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return throughput


def batch_cost_phase(model_dir: Path, device: str, args: argparse.Namespace) -> dict[int, float]:
    """The service's own cross-encoder backend (fp16 on CUDA, as served) over 100-document
    requests, one at a time, at each ``--batch-costs`` value of ``batch_cost_tokens``: which cut of
    a request's sorted pairs into passes pays on this device."""
    from rerank_core.backends import build_backend
    from rerank_core.config import CrossEncoderConfig

    groups = scoring_groups(4 if args.quick else 32)
    throughput: dict[int, float] = {}
    for cost in args.batch_costs:
        config = CrossEncoderConfig(
            model=str(model_dir),
            device=device,
            batch_size=max(args.batch_sizes),
            max_tokens_per_batch=131072,
            batch_cost_tokens=cost,
        )
        backend = build_backend("gpu-check", config)
        backend.score_pairs(groups[0])  # warm-up
        t0 = time.perf_counter()
        for group in groups:
            backend.score_pairs(group)
        throughput[cost] = len(groups) * len(groups[0]) / (time.perf_counter() - t0)
        log(f"RESULT backend batch_cost_tokens={cost:6d}  100-document requests one at a time  "
            f"pairs/s={throughput[cost]:9.0f}")
    return throughput


def main(argv: list[str] | None = None) -> int:
    """Run the check; the exit status (0, 1, 2) is in the module docstring."""
    args = parse_args(argv)
    # Before Ray is imported: local Ray 2.60 turns token auth on by default; this throwaway cluster
    # on loopback does not need it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    device = pick_device(args.allow_cpu)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        model_dir = prepare_model(args, Path(tmp))
        log(f"model: {model_dir}; batch sizes {args.batch_sizes}; {args.docs_per_request} docs a "
            f"request; {args.client_procs} client process(es) x {args.concurrency} in flight")
        served, failures = serve_phase(model_dir, device, args)
        local = inprocess_phase(model_dir, device, args)
        precision_phase(model_dir, device, args)
        batch_cost_phase(model_dir, device, args)
    if served and local:
        best_served, best_local = max(served.values()), max(local.values())
        log(f"RESULT best served {best_served:.0f} pairs/s = {100 * best_served / best_local:.0f}% "
            f"of best in-process {best_local:.0f} pairs/s")
    log(f"finished in {time.perf_counter() - started:.0f}s")
    if failures:
        for f in failures:
            log(f"FAIL: {f}")
        return 2
    log(f"PASS: the replica ran on {device} and answered every request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
