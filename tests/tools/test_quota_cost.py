"""``python -m rerank_tools.quota_cost``: a take timed in process and through a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_tools.quota_cost import main


def test_both_stores_are_timed(redis_server: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--calls", "50"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["store"], line["shared"], line["calls"]) for line in lines] == [
        ("in process", False, 50),
        ("redis on loopback", True, 50),
    ]
    assert all(0 < line["p50_us"] <= line["p99_us"] for line in lines)
