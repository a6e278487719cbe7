"""``rerank-bench --runtimes``: every runtime scores the same requests in one run, with torch's
throughput as the baseline of each ratio (the tiny cross-encoder; no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_tools.benchmark import cli


def test_runtime_sweep_measures_each_runtime_against_torch(
    tiny_model_dir: Path, candidates: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    argv = [
        *("--runtimes", "onnx-int8,openvino,openvino-bf16", "--model-dir", str(tiny_model_dir)),
        *("--candidates", str(candidates), "--runtime-docs", "4", "--samples", "6"),
        *("--runtime-max-s", "0", "--threads", "1", "--docs", "4"),
        *("--export-cache-dir", str(tmp_path / "exports"), "--output-dir", str(out)),
    ]
    with (tmp_path / "stdout.jsonl").open("w") as stdout:
        cli.run(cli.build_parser().parse_args(argv), cli.build_parser(), stdout)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    runtimes = [r for r in records if r["kind"] == "runtime"]
    assert [(r["runtime"], r["quantization"], r["cpu_dtype"]) for r in runtimes] == [
        ("torch", "none", "float32"),
        ("onnx", "int8", "float32"),
        ("openvino", "none", "float32"),
        ("openvino", "none", "bfloat16"),
    ]
    assert runtimes[-1]["label"] == "openvino-bf16"
    # --runtime-max-s 0: one round, the same single request for every runtime.
    for r in runtimes:
        assert r["requests"] == 1 and r["pairs"] == 4 and r["docs_per_request"] == 4
        assert r["pairs_per_s"] > 0
        assert r["vs_torch"] == pytest.approx(r["pairs_per_s"] / runtimes[0]["pairs_per_s"])
    assert runtimes[0]["vs_torch"] == 1.0


def test_an_unknown_runtime_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--runtimes", "onnx,tensorrt"])
    assert "unknown runtime tensorrt; known: torch, torch-bf16, onnx, onnx-int8" in capsys.readouterr().err
