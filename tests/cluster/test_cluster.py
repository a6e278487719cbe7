"""The service on a real multi-node Ray cluster on 127.0.0.1 (``ray start`` head and workers, the
GCS kept in a Redis started for the test, ``serve deploy --address <dashboard>`` of the
repository's own serve_config.yaml): placement, the head's GCS killed under load and brought back
from Redis, a worker lost under load and replaced, user_config without a restart and a rolling
model update with no failed request. Every process the test starts (Redis included) is stopped by
pid; it prints what it proved. Without ``redis-server`` it skips, naming it (a failure under
``.ci/run``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
import pytest

from rerank_tools.cluster import CLUSTER_MARKER
from rerank_tools.cluster_demo import run_demo


def processes_of(temp_dir: Path) -> list[str]:
    """Processes started for the cluster in ``temp_dir``: they all inherit its marker variable,
    and Redis keeps its files there."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            marked = proc.environ().get(CLUSTER_MARKER) == str(temp_dir)
            if marked or str(temp_dir) in " ".join(proc.info["cmdline"] or []):
                found.append(f"{proc.info['pid']} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("redis_server")
def test_shipped_config_survives_a_lost_gcs_a_lost_node_and_updates() -> None:
    # Short, since Ray puts Unix sockets under it; unique, so other Rays on the host are not counted.
    temp_dir = Path(tempfile.mkdtemp(prefix="rrc-test-"))
    proved = run_demo(temp_dir=temp_dir)
    print("\n".join(["", *proved]))
    assert len(proved) == 11
    # Nothing of the cluster, nor its Redis, is left running.
    assert processes_of(temp_dir) == []
