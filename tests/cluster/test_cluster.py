"""The service on a real multi-node Ray cluster on 127.0.0.1 (``ray start`` head and workers,
``serve deploy --address <dashboard>``): placement by custom resources, a worker lost under load,
a worker rejoining, user_config without a restart and a rolling model update with no failed
request. Every process the test starts is stopped by pid; it prints what it proved.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psutil
import pytest

from rerank_tools.cluster import CLUSTER_MARKER
from rerank_tools.cluster_demo import run_demo


def processes_of(temp_dir: Path) -> list[str]:
    """Processes started for the cluster in ``temp_dir``: they all inherit its marker variable."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(CLUSTER_MARKER) == str(temp_dir):
                found.append(f"{proc.info['pid']} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.timeout(480)
def test_cluster_survives_node_loss_and_updates(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The rolled-out model: the same weights in another directory, so the answers keep their order.
    next_dir = shutil.copytree(tiny_model_dir, tmp_path / "tiny-cross-encoder-v2")
    # Short, since Ray puts Unix sockets under it; unique, so other Rays on the host are not counted.
    temp_dir = Path(tempfile.mkdtemp(prefix="rrc-test-"))
    proved = run_demo(
        {"type": "cross_encoder", "model": str(tiny_model_dir)},
        {"type": "cross_encoder", "model": str(next_dir)},
        temp_dir=temp_dir,
    )
    print("\n".join(["", *proved]))
    assert len(proved) == 7
    # Nothing of the cluster is left running.
    assert processes_of(temp_dir) == []
