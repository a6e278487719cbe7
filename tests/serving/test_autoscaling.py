"""Autoscaling seen to scale: a model deployment with ``min_replicas: 1, max_replicas: 3`` and
fractional CPUs goes above one replica under sustained load and back to one after it, counted from
Serve's public status API (``serve.status()``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rerank_tools.benchmark.loadgen import Load

APP = "autoscale"
MODEL = "model-scaled"
DOCS = [f"passage {i} about photosynthesis, light and the sugar that plants make" for i in range(20)]


def running_replicas() -> int:
    """RUNNING replicas of the model deployment, from ``serve.status()``."""
    from ray import serve

    deployment = serve.status().applications[APP].deployments[MODEL]
    return int(deployment.replica_states.get("RUNNING", 0))


def wait_until(check: Callable[[], bool], timeout_s: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.5)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def scaled_app(ray_serve: int, tiny_model_dir: Path) -> Iterator[str]:
    from ray import serve

    from deployments.app import build_app

    service = {
        "backends": {
            "scaled": {
                "type": "cross_encoder",
                "model": str(tiny_model_dir),
                "serving": {
                    "num_cpus": 0.05,
                    "torch_threads": 1,
                    "min_replicas": 1,
                    "max_replicas": 3,
                    # One request in flight per replica is the target: six clients ask for three.
                    "target_ongoing_requests": 1,
                    "upscale_delay_s": 1,
                    "downscale_delay_s": 3,
                    "max_batch_size": 32,
                    "batch_wait_timeout_s": 0.01,
                },
            }
        },
        "routes": {"default": {"backends": ["scaled"], "timeout_s": 30}},
        "router": {"num_cpus": 0.05},
    }
    serve.run(build_app({"service": service}), name=APP, route_prefix=f"/{APP}")
    try:
        yield f"http://127.0.0.1:{ray_serve}/{APP}"
    finally:
        serve.delete(APP)


@pytest.mark.serve
@pytest.mark.timeout(300)
def test_replicas_go_up_under_load_and_back_to_one(scaled_app: str) -> None:
    assert running_replicas() == 1
    with Load(scaled_app + "/rerank", {"query": "how do plants make food", "documents": DOCS},
              clients=6) as load:  # fmt: skip
        up_s = wait_until(lambda: running_replicas() > 1, 120)
        peak = running_replicas()
    assert load.outcomes and all(o.status == 200 for o in load.outcomes)
    down_s = wait_until(lambda: running_replicas() == 1, 120)
    print(f"\nautoscaling: {peak} replicas {up_s:.0f} s into the load, back to 1 {down_s:.0f} s after it "
          f"({len(load.outcomes)} requests, all 200)")
