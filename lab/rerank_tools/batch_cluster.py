"""``rerank-batch`` on a real two-node Ray cluster on 127.0.0.1, submitted as to any running
cluster (``ray job submit --address <dashboard> -- rerank-batch ...``), and its output set beside
the same job's on one node (a local Ray of its own).

    python -m rerank_tools.batch_cluster INPUT --config FILE --backend NAME [--batch-pairs 8]

The cluster: a head with 1 CPU and a worker with 2, started with ``ray start`` and stopped by pid
(``rerank_tools.cluster``). The job asks for 2 to 3 actors of 1 CPU each, so the pool spans both
nodes. Prints one JSON line: the batches each node's actors scored, and whether the two outputs hold
the same rows, ranks and scores (within 1e-5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerank_tools.batch_bench import batch_command, part_rows, run_batch_command
from rerank_tools.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]


def compare(one: Path, other: Path) -> dict[str, Any]:
    a, b = part_rows(one), part_rows(other)
    same_rows = a.keys() == b.keys()
    return {
        "same_rows": same_rows,
        "same_ranks": same_rows and all(a[k][1] == b[k][1] for k in a),
        "max_score_diff": max((abs(a[k][0] - b[k][0]) for k in a if k in b), default=None),
    }


def run(
    input: Path, config: Path, backend: str, batch_pairs: int, work: Path, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """The job on one node, then submitted to a fresh two-node cluster; what each did."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    one_node = work / "one-node"
    run_batch_command(batch_command(input, one_node, config, backend, batch_pairs, 1), env)
    say("one node: done")
    on_cluster = work / "cluster"
    pythonpath = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with LocalCluster(env=pythonpath, temp_dir=Path(tempfile.mkdtemp(prefix="rrb-"))) as cluster:
        cluster.start_head()
        cluster.add_worker("worker-1", 2, {"batch_node": 2})
        say(f"cluster up: head {cluster.address}, dashboard {cluster.dashboard_url}")
        command = batch_command(input, on_cluster, config, backend, batch_pairs, 1)
        submit = [
            str(Path(sys.executable).with_name("ray")), "job", "submit",
            "--address", cluster.dashboard_url, "--", *command, "--min-actors", "2", "--max-actors", "3",
        ]  # fmt: skip
        submitted = subprocess.run(
            submit, env=cluster.process_env(), capture_output=True, text=True, timeout=600
        )
    say("cluster stopped by pid")
    summary_file = on_cluster / "summary.json"
    if submitted.returncode != 0 or not summary_file.is_file():
        raise RuntimeError(f"ray job submit failed:\n{submitted.stdout[-3000:]}\n{submitted.stderr[-2000:]}")
    summary = json.loads(summary_file.read_text())
    return {
        "submitted_with": "ray job submit",
        "batches": summary["batches"],
        "batches_by_node": summary["batches_by_node"],
        "nodes_with_work": len(summary["batches_by_node"]),
        **compare(one_node, on_cluster),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--batch-pairs", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="batch-cluster-") as work:
        found = run(args.input.resolve(), args.config.resolve(), args.backend, args.batch_pairs, Path(work))
    print(json.dumps(found))
    return 0 if found["nodes_with_work"] == 2 and found["same_ranks"] else 1


if __name__ == "__main__":
    sys.exit(main())
