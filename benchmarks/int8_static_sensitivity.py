"""Where static int8 loses a cross-encoder's order: OpenVINO + NNCF post-training quantization of
all layers, of each group of MatMuls alone, and of all but one group, each measured against the
fp32 export by the mean per-query Kendall tau on TREC DL 2020 candidates (as ``rerank-agreement``
measures it) and by speed at one thread.

    python benchmarks/int8_static_sensitivity.py --model <cross-encoder dir> --queries 10

Each variant uses the built-in calibration text of ``quantization: int8-static``
(``rerank_core.backends.calibration``) and NNCF's transformer preset, as the export does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

GROUPS = {
    "qkv projections": ("self/query/", "self/key/", "self/value/"),
    "attention products": ("self/MatMul",),
    "attention output": ("attention/output/dense",),
    "ffn in": ("intermediate/dense",),
    "ffn out": ("/output/dense",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="cross-encoder directory")
    parser.add_argument("--data", default="../shared/data/trec-dl20/candidates.jsonl")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    import nncf
    import numpy as np
    import openvino
    import torch
    from sentence_transformers import CrossEncoder

    from rerank_core.backends.calibration import calibration_pairs
    from rerank_core.backends.exports import _trace_to_onnx
    from rerank_tools.agreement import kendall_tau_b

    torch.set_num_threads(1)
    model = CrossEncoder(args.model, max_length=args.max_length, local_files_only=True)
    sample = model.preprocess([("a short query", "a short document"), ("another query", "a document")])
    names = tuple(k for k, v in sample.items() if isinstance(v, torch.Tensor))

    def feeds(pairs: list[tuple[str, str]], size: int) -> list[dict[str, np.ndarray]]:
        return [
            {n: model.preprocess(pairs[i : i + size])[n].numpy() for n in names}
            for i in range(0, len(pairs), size)
        ]

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        _trace_to_onnx(model, sample, names, "scores", onnx_path)
        fp32 = openvino.convert_model(onnx_path)
    calibration = feeds(calibration_pairs("sensitivity", None), 8)
    lines = Path(args.data).read_text().splitlines()[: args.queries]
    queries = [json.loads(line) for line in lines]
    lists = [feeds([(q["query"], c["text"]) for c in q["candidates"]], 32) for q in queries]

    def scores(ov_model: object) -> tuple[list[np.ndarray], float]:
        properties = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        request = openvino.Core().compile_model(ov_model, "CPU", properties).create_infer_request()
        started = time.perf_counter()
        out = [np.concatenate([np.array(request.infer(f)[0]).reshape(-1) for f in fs]) for fs in lists]
        return out, time.perf_counter() - started

    reference, fp32_s = scores(fp32)
    matmuls = [op.get_friendly_name() for op in fp32.get_ops() if op.get_type_name() == "MatMul"]

    def members(keys: tuple[str, ...]) -> set[str]:
        found = {n for n in matmuls if any(k in n for k in keys)}
        return {n for n in found if keys != GROUPS["ffn out"] or "attention" not in n}

    variants: dict[str, list[str]] = {"all quantized": []}
    for group, keys in GROUPS.items():
        variants[f"only {group}"] = [n for n in matmuls if n not in members(keys)]
    for group, keys in GROUPS.items():
        variants[f"all but {group}"] = sorted(members(keys))
    print("| variant | mean tau | min tau | largest score difference | speed vs fp32 |")
    print("| --- | --- | --- | --- | --- |")
    for label, ignored in variants.items():
        scope = nncf.IgnoredScope(names=ignored, validate=False)
        quantized = nncf.quantize(
            fp32.clone(),
            nncf.Dataset(calibration),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            ignored_scope=scope,
        )
        got, seconds = scores(quantized)
        taus = [kendall_tau_b(list(a), list(b)) for a, b in zip(reference, got, strict=True)]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, got, strict=True))
        print(
            f"| {label} | {np.mean(taus):.4f} | {min(taus):.4f} | {diff:.3f} | {fp32_s / seconds:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
