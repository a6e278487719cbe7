"""``rerank-agreement``: how far each optimized runtime's scores are from torch fp32, on TREC DL20.

For every runtime x quantization (onnx, openvino; none, int8; and openvino int8-static) and the
bfloat16 CPU compute of torch and openvino (``cpu_dtype``), measured against torch fp32 in the
same run on the same trec-dl20 candidates (``<data-dir>/trec-dl20``):

- the packaged all-MiniLM-L6-v2 bi-encoder's nDCG@10, which must stay within ``--ndcg-bound``
  (0.005) of torch's;
- the benchmark cross-encoder's (``rerank-bench-model``) mean per-query Kendall
  tau-b of its scores against torch's, which must be at least ``--tau-bound`` (0.98), and the
  largest absolute difference of a raw score (reported, not bounded).

Prints one JSON object (also written to ``--output``) and a short table on stderr; exit status 0
when every bound holds, 1 when one does not, 2 when the measurement cannot be made.

    rerank-agreement --bench-model-dir models/bench-minilm-l6-cross-encoder --queries 54
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rerank_core.backends.bi_encoder import BiEncoderBackend
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.backends.local import LocalModelBackend
from rerank_core.config import BiEncoderConfig, CrossEncoderConfig
from rerank_core.errors import RerankError
from rerank_tools.benchmark.runtimes import RUNTIME_LABELS
from rerank_tools.evaluation.loaders import DatasetError, EvalQuery, load_named
from rerank_tools.evaluation.metrics import evaluate_run, relevance_threshold

#: The reference every other runtime is compared with.
REFERENCE = "torch"
#: What ``--runtimes`` can name: every label of ``rerank-bench --runtimes`` but the reference.
RUNTIMES = tuple(label for label in RUNTIME_LABELS if label != REFERENCE)


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two score lists over the same items (ties counted as tau-b does);
    1.0 when both lists are constant."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    pairs = len(i)
    untied_x, untied_y = pairs - int(np.sum(dx == 0)), pairs - int(np.sum(dy == 0))
    if untied_x == 0 and untied_y == 0:
        return 1.0
    if untied_x == 0 or untied_y == 0:
        return 0.0
    return float(np.sum(dx * dy) / np.sqrt(untied_x * untied_y))


def _ranked(query: EvalQuery, scores: Sequence[float]) -> list[str]:
    """Docids best first; equal scores keep first-stage order."""
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    return [query.candidates[k].docid for k in order]


def _scores(backend: LocalModelBackend, queries: Sequence[EvalQuery], bar: tqdm) -> Iterator[list[float]]:
    for query in queries:
        yield backend.score_pairs([(query.query, c.text) for c in query.candidates])
        bar.update(1)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every runtime's agreement with torch fp32; the result object ``main`` prints."""
    import torch

    torch.set_num_threads(args.threads)
    dataset = load_named("trec-dl20", args.data_dir)
    bi_queries = dataset.queries[: args.queries]
    ce_queries = dataset.queries[: args.cross_encoder_queries or args.queries]
    rel = relevance_threshold(dataset.qrels)
    # Only the measured queries' judgments: a judged query left out would count as a zero.
    judged = {q.qid: dataset.qrels[q.qid] for q in bi_queries if q.qid in dataset.qrels}
    measured = [label for label in RUNTIMES if label in args.runtimes]
    combos = [REFERENCE, *measured]
    steps = len(combos) * (len(bi_queries) + len(ce_queries))
    cache = {"export_cache_dir": str(args.export_cache_dir)} if args.export_cache_dir else {}

    def settings(label: str) -> dict[str, str]:
        variant = RUNTIME_LABELS[label]
        if variant.quantization == "int8-static" and args.calibration_file:
            return {**variant.config(), "calibration_file": str(args.calibration_file)}
        return variant.config()

    bi: dict[str, dict[str, Any]] = {}
    ce_scores: dict[str, list[list[float]]] = {}
    with tqdm(total=steps, desc="agreement", unit="query", file=sys.stderr) as bar:
        for label in combos:
            bar.set_postfix_str(f"bi-encoder {label}")
            backend = BiEncoderBackend("minilm", BiEncoderConfig(**settings(label), **cache))
            run = {
                q.qid: _ranked(q, s)
                for q, s in zip(bi_queries, _scores(backend, bi_queries, bar), strict=True)
            }
            bi[label] = evaluate_run(run, judged, rel)
            bar.set_postfix_str(f"cross-encoder {label}")
            cross = CrossEncoderBackend(
                "bench",
                CrossEncoderConfig(model=str(args.bench_model_dir), **settings(label), **cache),
            )
            ce_scores[label] = list(_scores(cross, ce_queries, bar))

    reference = REFERENCE
    ref_ndcg = bi[reference]["ndcg@10"]
    rows = []
    for label in measured:
        taus = [kendall_tau_b(a, b) for a, b in zip(ce_scores[label], ce_scores[reference], strict=True)]
        max_diff = max(
            abs(x - y)
            for a, b in zip(ce_scores[label], ce_scores[reference], strict=True)
            for x, y in zip(a, b, strict=True)
        )
        ndcg = bi[label]["ndcg@10"]
        rows.append(
            {
                "label": label,
                **RUNTIME_LABELS[label].config(),
                "bi_encoder_ndcg@10": ndcg,
                "bi_encoder_ndcg_delta": ndcg - ref_ndcg,
                "bi_encoder_ok": abs(ndcg - ref_ndcg) <= args.ndcg_bound,
                "cross_encoder_mean_kendall_tau": float(np.mean(taus)),
                "cross_encoder_min_kendall_tau": float(np.min(taus)),
                "cross_encoder_max_abs_score_diff": max_diff,
                "cross_encoder_ok": float(np.mean(taus)) >= args.tau_bound,
            }
        )
    return {
        "kind": "agreement",
        "dataset": "trec-dl20",
        "bi_encoder_queries": len(bi_queries),
        "cross_encoder_queries": len(ce_queries),
        "candidates_per_query": max(len(q.candidates) for q in dataset.queries),
        "threads": args.threads,
        "bounds": {"ndcg_abs_delta_max": args.ndcg_bound, "mean_kendall_tau_min": args.tau_bound},
        "reference": {"label": REFERENCE, **RUNTIME_LABELS[REFERENCE].config(), "bi_encoder": bi[reference]},
        "runtimes": rows,
        "ok": all(r["bi_encoder_ok"] and r["cross_encoder_ok"] for r in rows),
    }


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"torch fp32 bi-encoder nDCG@10 {result['reference']['bi_encoder']['ndcg@10']:.4f} "
        f"({result['bi_encoder_queries']} queries); cross-encoder on {result['cross_encoder_queries']}",
        "runtime               nDCG@10  delta    ok | mean tau  min tau  max |diff|  ok",
    ]
    for r in result["runtimes"]:
        lines.append(
            f"{r['label']:<21} {r['bi_encoder_ndcg@10']:.4f}  "
            f"{r['bi_encoder_ndcg_delta']:+.4f}  {'yes' if r['bi_encoder_ok'] else 'NO':<3}| "
            f"{r['cross_encoder_mean_kendall_tau']:.4f}    {r['cross_encoder_min_kendall_tau']:.4f}   "
            f"{r['cross_encoder_max_abs_score_diff']:.4f}      "
            f"{'yes' if r['cross_encoder_ok'] else 'NO'}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-agreement",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("RERANK_SHARED_DATA", "../shared/data"))
    )
    parser.add_argument("--bench-model-dir", type=Path, default=Path("models/bench-minilm-l6-cross-encoder"))
    parser.add_argument("--queries", type=int, default=54, help="first N DL20 queries (54: all)")
    parser.add_argument(
        "--cross-encoder-queries", type=int, help="first N queries for the cross-encoder (default: --queries)"
    )
    parser.add_argument("--ndcg-bound", type=float, default=0.005)
    parser.add_argument("--tau-bound", type=float, default=0.98)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="inference threads")
    parser.add_argument("--export-cache-dir", type=Path, help="where exports go (default: as configured)")
    parser.add_argument("--output", type=Path, help="also write the JSON result here")
    known = list(RUNTIMES)
    parser.add_argument(
        "--runtimes",
        type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        default=known,
        help=f"comma-separated, of {','.join(known)} (torch fp32 is always the reference)",
    )
    parser.add_argument(
        "--calibration-file",
        type=Path,
        help="int8-static: calibration text, JSON lines of {query, documents} (default: built in)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rerank-agreement``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.queries < 1 or (args.cross_encoder_queries is not None and args.cross_encoder_queries < 1):
        parser.error("--queries and --cross-encoder-queries must be at least 1")
    unknown = sorted(set(args.runtimes) - set(RUNTIMES))
    if unknown or not args.runtimes:
        parser.error(f"--runtimes: unknown {', '.join(unknown) or 'empty list'}")
    if not args.bench_model_dir.is_dir():
        parser.error(
            f"--bench-model-dir {args.bench_model_dir} is not a directory "
            "(build it with rerank-bench-model)"
        )
    try:
        # stdout carries the JSON result alone: what the export libraries print goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            result = measure(args)
    except (DatasetError, RerankError) as exc:
        print(f"rerank-agreement: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    print(_table(result), file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
