"""rerank-batch submitted with ``ray job submit`` to a real two-node Ray cluster on 127.0.0.1 (a
head of 1 CPU, a worker of 2, started with ``ray start`` and stopped by pid): actors on both nodes
score batches, and the output is the one-node job's, row for row and rank for rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rerank_tools.batch_cluster import run
from tests.tiny_models import EXAMPLES


@pytest.mark.timeout(600)
def test_a_job_submitted_to_a_cluster_uses_both_nodes_and_scores_as_one_node(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = [
        {
            "query_id": f"q{c}-{n}",
            "query": e.query,
            "candidates": [{"doc_id": f"d{i}", "text": t} for i, t in enumerate([e.relevant, *e.irrelevant])],
        }
        for c in range(25)
        for n, e in enumerate(EXAMPLES)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "service.yaml"
    backend = {"type": "cross_encoder", "model": str(tiny_model_dir)}
    config.write_text(yaml.safe_dump({"backends": {"tiny": backend}}))
    found = run(source, config, "tiny", batch_pairs=4, work=tmp_path / "work")
    print(json.dumps(found))
    assert found["batches"] == len(rows)
    assert found["nodes_with_work"] == 2
    assert sum(found["batches_by_node"].values()) == len(rows)
    assert found["same_rows"] and found["same_ranks"]
    assert found["max_score_diff"] <= 1e-5
