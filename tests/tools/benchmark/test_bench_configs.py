"""The benchmark's two service configurations: both valid, and the same service but for its runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rerank_core.config import load_app_args

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def read(name: str) -> dict[str, Any]:
    return yaml.safe_load((BENCHMARKS / name).read_text())


def test_fast_config_is_the_bench_service_in_openvino_bf16() -> None:
    bench, fast = read("serve_bench.yaml"), read("serve_fast.yaml")
    services = {}
    for name, config in (("bench", bench), ("fast", fast)):
        (app,) = config["applications"]
        services[name] = load_app_args(app["args"])
    assert fast["http_options"] == bench["http_options"] and fast["http_options"]["port"] == 8011
    assert services["fast"].routes == services["bench"].routes
    assert set(services["fast"].backends) == set(services["bench"].backends) == {"bench"}
    fast_model, bench_model = services["fast"].backends["bench"], services["bench"].backends["bench"]
    assert (fast_model.runtime, fast_model.cpu_dtype) == ("openvino", "bfloat16")
    assert (bench_model.runtime, bench_model.cpu_dtype) == ("torch", "float32")
    assert fast_model.model == bench_model.model
