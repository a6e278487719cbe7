"""The service on a real multi-node Ray cluster on 127.0.0.1 (``ray start`` head and workers,
``serve deploy --address <dashboard>``): placement by custom resources, a worker lost under load,
a worker rejoining, user_config without a restart and a rolling model update with no failed
request. Every process the test starts is stopped by pid; it prints what it proved.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from rerank_tools.cluster_demo import run_demo


def _ray_processes() -> set[int]:
    names = {"raylet", "gcs_server"}
    found = set()
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in names:
            found.add(proc.pid)
    return found


@pytest.mark.timeout(480)
def test_cluster_survives_node_loss_and_updates(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The rolled-out model: the same weights in another directory, so the answers keep their order.
    next_dir = shutil.copytree(tiny_model_dir, tmp_path / "tiny-cross-encoder-v2")
    before = _ray_processes()
    proved = run_demo(
        {"type": "cross_encoder", "model": str(tiny_model_dir)},
        {"type": "cross_encoder", "model": str(next_dir)},
    )
    print("\n".join(["", *proved]))
    assert len(proved) == 7
    # Nothing of the cluster is left: no raylet or GCS that was not running before the test.
    assert _ray_processes() - before == set()
