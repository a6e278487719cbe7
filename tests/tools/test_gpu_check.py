"""The GPU check's command line and its refusal to run without a GPU (its GPU run is on a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_core.config import load_config
from rerank_tools import gpu_check

GPU_CHECK = [sys.executable, "-m", "rerank_tools.gpu_check"]


def test_gpu_check_help_and_arguments() -> None:
    help_text = subprocess.run([*GPU_CHECK, "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "--allow-cpu" in help_text.stdout
    quick = gpu_check.parse_args(["--allow-cpu", "--quick"])
    assert quick.batch_sizes == [8, 32] and quick.allow_cpu and quick.duration_s < 10
    full = gpu_check.parse_args(["--batch-sizes", "16,128", "--docs-per-request", "20"])
    assert full.batch_sizes == [16, 128] and full.docs_per_request == 20 and not full.allow_cpu
    config = load_config(gpu_check.service_config(Path("/models/x"), 64, 1, 2))
    serving = config.backends[gpu_check.BACKEND].serving
    assert (serving.num_gpus, serving.max_batch_size) == (1, 64)
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--batch-sizes", "0,8"])


def test_gpu_check_exits_1_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here: the check would run for real")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(GPU_CHECK, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "no CUDA GPU" in done.stdout


def test_the_latency_phase_and_the_in_process_phases_take_their_settings() -> None:
    quick = gpu_check.parse_args(["--allow-cpu", "--quick"])
    assert (quick.long_docs, quick.long_concurrency, quick.long_batch_size) == (100, 1, 32)
    full = gpu_check.parse_args(["--batch-costs", "256,4096", "--long-concurrency", "4"])
    assert full.batch_costs == [256, 4096] and full.long_concurrency == 4
    for bad in (["--batch-costs", "a,b"], ["--long-docs", "0"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_precision_and_batch_cost_phases_measure_the_tiny_model_on_cpu(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = gpu_check.parse_args(["--allow-cpu", "--quick", "--batch-costs", "64,100000"])
    precision = gpu_check.precision_phase(tiny_model_dir, "cpu", args)
    assert set(precision) == {"fp32", "bf16"} and min(precision.values()) > 0
    costs = gpu_check.batch_cost_phase(tiny_model_dir, "cpu", args)
    assert set(costs) == {64, 100000} and min(costs.values()) > 0
    out = capsys.readouterr().out
    # bf16 is compared with fp32 query by query; a tau of a half-precision order is printed.
    assert "RESULT precision bf16" in out and "mean tau vs fp32=" in out
    assert out.count("RESULT backend batch_cost_tokens=") == 2
