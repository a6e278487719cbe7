"""Interactive and bulk requests together on one model replica: both are answered with the model's
scores, and ``/v1/stats`` counts each lane. Bulk requests go to the model through its deployment
handle, their lane set as the Router sets it from a tenant's class."""

from __future__ import annotations

import math
from typing import Any

import pytest
import ray
from ray import serve

from deployments.app import model_deployment_name
from rerank_core.types import Answer, RankRequest
from tests.serving.conftest import ServedApp, settled_stats
from tests.tiny_models import EXAMPLES

pytestmark = pytest.mark.serve

EX = EXAMPLES[0]
DOCS = [*EX.irrelevant, EX.relevant]
#: A bulk request of several chunks.
BULK_DOCS = DOCS * 20


@ray.remote(num_cpus=0)
class BulkClient:
    """Sends bulk requests through the model deployment's handle from inside Ray: under the
    throughput-optimized Serve the tests run, a handle's calls need an event loop that lives as
    long as the handle, as an async actor's does."""

    async def answer(self, request: RankRequest) -> Answer:
        handle = serve.get_deployment_handle(model_deployment_name("tiny"), app_name="rerank")
        answer: Answer = await handle.answer.remote(request)
        return answer


def test_bulk_and_interactive_requests_share_the_model(app: ServedApp) -> None:
    def read() -> dict[str, Any]:
        return app.get("/v1/stats").json()["models"]["tiny"]

    before = settled_stats(read)
    client = BulkClient.remote()  # type: ignore[attr-defined]
    try:
        bulk = [client.answer.remote(RankRequest(EX.query, BULK_DOCS, lane="bulk")) for _ in range(4)]
        interactive = [app.post("/rerank", {"query": EX.query, "documents": DOCS}) for _ in range(5)]
        answers = ray.get(bulk, timeout=60)
    finally:
        ray.kill(client)

    assert all(r.status_code == 200 for r in interactive), [r.text for r in interactive]
    scores = {r["index"]: r["score"] for r in interactive[0].json()["results"]}
    assert max(scores, key=scores.__getitem__) == len(DOCS) - 1
    for answer in answers:
        assert len(answer.results) == len(BULK_DOCS)
        for scored in answer.results:
            assert scored.score == pytest.approx(scores[scored.index % len(DOCS)], abs=1e-5)

    after = settled_stats(read)
    lanes, was = after["lanes"], before["lanes"]
    assert lanes["interactive"]["requests"] - was["interactive"]["requests"] == 5
    assert lanes["bulk"]["requests"] - was["bulk"]["requests"] == 4
    assert lanes["bulk"]["pairs"] - was["bulk"]["pairs"] == 4 * len(BULK_DOCS)
    chunks = math.ceil(len(BULK_DOCS) / after["bulk_chunk_pairs"])
    assert lanes["bulk"]["units"] - was["bulk"]["units"] == 4 * chunks > 4
    assert lanes["bulk"]["inside"] == lanes["bulk"]["waiting"] == 0
