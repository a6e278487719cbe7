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


def test_tenants_config_is_the_fast_service_with_tenants() -> None:
    fast, tenants = read("serve_fast.yaml"), read("serve_tenants.yaml")
    (fast_app,), (tenants_app,) = fast["applications"], tenants["applications"]
    fast_service, tenants_service = load_app_args(fast_app["args"]), load_app_args(tenants_app["args"])
    assert tenants["http_options"] == fast["http_options"]
    same = {"routes", "limits", "router"}
    assert tenants_service.model_dump(include=same) == fast_service.model_dump(include=same)
    # The same model and serving, but for how bulk work enters the batch queue.
    fast_model = fast_service.backends["bench"].model_dump(exclude={"serving"})
    assert tenants_service.backends["bench"].model_dump(exclude={"serving"}) == fast_model
    bulk = {"bulk_chunk_pairs"}
    fast_serving = fast_service.backends["bench"].serving.model_dump(exclude=bulk)
    assert tenants_service.backends["bench"].serving.model_dump(exclude=bulk) == fast_serving
    assert tenants_service.auth.enabled
    classes = {name: t.traffic_class for name, t in tenants_service.tenants.items()}
    assert classes == {"interactive": "interactive", "bulk": "bulk", "limited": "interactive"}


def test_fp32_config_is_the_fast_service_in_float32() -> None:
    fast, fp32 = read("serve_fast.yaml"), read("serve_fp32.yaml")
    (fast_app,), (fp32_app,) = fast["applications"], fp32["applications"]
    fast_service, fp32_service = load_app_args(fast_app["args"]), load_app_args(fp32_app["args"])
    assert fp32["http_options"] == fast["http_options"]
    # The same service, model, engine and serving settings, but for the compute type.
    assert fp32_service.model_dump(exclude={"backends"}) == fast_service.model_dump(exclude={"backends"})
    fast_model, fp32_model = fast_service.backends["bench"], fp32_service.backends["bench"]
    assert fp32_model.model_dump(exclude={"cpu_dtype"}) == fast_model.model_dump(exclude={"cpu_dtype"})
    assert (fp32_model.runtime, fp32_model.cpu_dtype) == ("openvino", "float32")
