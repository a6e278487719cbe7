"""The Router's model backend refuses before the hop to a replica (no Ray started: a stand-in
handle records the calls that would have reached the model deployment)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.handles import DeploymentBackend
from rerank_core.admission import ModelQueue
from rerank_core.errors import BackendRateLimited
from rerank_core.types import Answer, ModelTiming, RankRequest, Scored


class StandInHandle:
    """``handle.answer.remote(...)`` as Serve's handle offers it, answering in input order."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer = self
        self.seen_ahead: list[int] = []
        self.queue: ModelQueue | None = None

    def remote(self, request: RankRequest) -> Any:
        self.calls += 1
        assert self.queue is not None
        self.seen_ahead.append(self.queue.pairs_ahead)

        async def answer() -> Answer:
            await asyncio.sleep(0)
            return Answer([Scored(i, 0.5) for i in range(len(request.documents))], ModelTiming())

        return answer()


async def test_a_request_past_its_deadline_is_refused_without_a_call() -> None:
    handle = StandInHandle()
    queue = ModelQueue("m", pairs_per_s=10.0, deadline_s=1.0)
    handle.queue = queue
    backend = DeploymentBackend("m", handle, queue)  # type: ignore[arg-type]
    queue.pairs_ahead = 20  # 2 s of work ahead against a 1 s deadline
    with pytest.raises(BackendRateLimited) as refused:
        await backend.rerank("q", ["a", "b"])
    assert handle.calls == 0
    assert refused.value.retry_after_s is not None and refused.value.retry_after_s >= 1


async def test_an_admitted_request_counts_as_ahead_while_it_runs() -> None:
    handle = StandInHandle()
    queue = ModelQueue("m", pairs_per_s=10.0, deadline_s=60.0)
    handle.queue = queue
    backend = DeploymentBackend("m", handle, queue)  # type: ignore[arg-type]
    results = await backend.rerank("q", ["a", "b", "c"])
    assert [s.index for s in results] == [0, 1, 2]
    assert handle.seen_ahead == [3] and queue.pairs_ahead == 0
