"""The model deployment's hot path over real HTTP: a request enters the batcher as one unit and a
large one in chunks; bounded queues refuse with 429 and the chain routes around a full model; the
score cache answers repeats and is bound to the model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from deployments.app import model_deployment_options
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.config import CrossEncoderConfig
from tests.serving.conftest import FAKE_CO_KEY, ServedApp, settled_stats
from tests.stubs.vendors import CohereStub
from tests.tiny_models import EXAMPLES

pytestmark = pytest.mark.serve

EX = EXAMPLES[0]
DOCS = [*EX.irrelevant, EX.relevant]
#: Seconds the "busy" model's batcher waits for more pairs: long enough that concurrent requests
#: find its one slot taken.
BUSY_WAIT_S = 3.0
RETRY_AFTER_S = 7


def tiny_stats(app: ServedApp) -> dict[str, Any]:
    return settled_stats(lambda: app.get("/v1/stats").json()["models"]["tiny"])


def new_batches(before: dict[str, Any], after: dict[str, Any]) -> list[int]:
    sizes = []
    for size, count in after["sizes"].items():
        sizes += [int(size)] * (count - before["sizes"].get(size, 0))
    return sorted(sizes)


def test_a_request_is_one_unit_and_a_large_one_is_split(app: ServedApp) -> None:
    before = tiny_stats(app)
    assert app.post("/rerank", {"query": EX.query, "documents": DOCS}).status_code == 200
    middle = tiny_stats(app)
    assert middle["units"] - before["units"] == 1
    assert new_batches(before, middle) == [len(DOCS)], "the request's pairs in one batch"

    many = [f"{EX.relevant} ({i})" for i in range(50)]
    assert app.post("/rerank", {"query": EX.query, "documents": many}).status_code == 200
    after = tiny_stats(app)
    limit = after["max_batch_size"]
    assert limit < len(many)
    assert after["units"] - middle["units"] == -(-len(many) // limit), "chunks of max_batch_size"
    batches = new_batches(middle, after)
    assert sum(batches) == len(many) and max(batches) <= limit, batches


@dataclass
class HotApp:
    url: str
    config: dict[str, Any]
    tiny: Path

    def post(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.url + "/rerank", json=body, timeout=60)

    def stats(self, model: str) -> dict[str, Any]:
        return settled_stats(
            lambda: requests.get(self.url + "/v1/stats", timeout=60).json()["models"][model]
        )


def hot_config(tiny: Path, co_url: str, co_key: Path, cached_max_length: int | None) -> dict[str, Any]:
    small = {"num_cpus": 0.05, "torch_threads": 1}
    return {
        "backends": {
            # One request at a time, one waiting; the batcher holds each batch BUSY_WAIT_S.
            "busy": {
                "type": "cross_encoder",
                "model": str(tiny),
                "serving": {
                    **small,
                    "max_ongoing_requests": 1,
                    "max_queued_requests": 1,
                    "max_batch_size": 64,
                    "batch_wait_timeout_s": BUSY_WAIT_S,
                    "batch_wait_alone": True,
                    "score_cache_mib": 0,
                },
            },
            # Many requests at once, but no more pairs pending than one request of DOCS has.
            "busy_pairs": {
                "type": "cross_encoder",
                "model": str(tiny),
                "serving": {
                    **small,
                    "max_pending_pairs": len(DOCS),
                    "max_batch_size": 64,
                    "batch_wait_timeout_s": BUSY_WAIT_S,
                    "batch_wait_alone": True,
                    "score_cache_mib": 0,
                },
            },
            # The same long wait, but a request alone is batched at once (the default).
            "lone": {
                "type": "cross_encoder",
                "model": str(tiny),
                "serving": {
                    **small,
                    "max_batch_size": 64,
                    "batch_wait_timeout_s": BUSY_WAIT_S,
                    "score_cache_mib": 0,
                },
            },
            "cached": {
                "type": "cross_encoder",
                "model": str(tiny),
                "max_length": cached_max_length,
                "serving": {**small, "score_cache_mib": 1},
            },
            "co": {"type": "cohere", "base_url": co_url, "api_key_file": str(co_key)},
        },
        "routes": {
            "busy-only": {"backends": ["busy"], "retries": 0},
            "pairs-only": {"backends": ["busy_pairs"], "retries": 0},
            "busy-then-api": {"backends": ["busy", "co"], "retries": 0},
            "lone-only": {"backends": ["lone"], "retries": 0},
        },
        # Refused at once (no hold), so a 429's Retry-After is the configured one whole.
        "router": {"num_cpus": 0.05, "retry_after_s": RETRY_AFTER_S, "refusal_hold_s": 0},
    }


@pytest.fixture(scope="module")
def hot(app: ServedApp, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HotApp]:
    """A second application, /hot, with a model whose queue is tiny and a model with the cache."""
    from ray import serve

    from deployments.app import build_app

    key = tmp_path_factory.mktemp("hot") / "co"
    key.write_text(FAKE_CO_KEY)
    with CohereStub(api_key=FAKE_CO_KEY) as co:
        config = hot_config(tiny_model_dir, co.base_url, key, cached_max_length=None)
        serve.run(build_app({"service": config}), name="hot", route_prefix="/hot")
        yield HotApp(app.url + "/hot", config, tiny_model_dir)
        serve.delete("hot")


def burst(hot: HotApp, route: str, n: int = 6) -> list[requests.Response]:
    body = {"query": EX.query, "documents": DOCS, "model": route}
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: hot.post(body), range(n)))


@pytest.mark.parametrize("route", ["busy-only", "pairs-only"])
def test_a_full_model_queue_is_a_429_with_the_configured_retry_after(
    hot: HotApp, route: str
) -> None:
    """"busy-only": Serve's request queue is full; "pairs-only": the replica's pair bound is."""
    answers = burst(hot, route)
    statuses = sorted(r.status_code for r in answers)
    assert 200 in statuses and 429 in statuses and set(statuses) == {200, 429}, statuses
    for r in answers:
        if r.status_code == 429:
            assert r.headers["Retry-After"] == str(RETRY_AFTER_S)
            assert r.json()["error"]["type"] == "rate_limited"
        else:
            assert r.json()["results"][0]["index"] == len(DOCS) - 1


def test_a_request_alone_is_batched_at_once_and_company_waits(hot: HotApp) -> None:
    before = hot.stats("lone")
    started = time.monotonic()
    answer = hot.post({"query": EX.query, "documents": DOCS, "model": "lone-only"})
    alone_s = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()["results"][0]["index"] == len(DOCS) - 1
    middle = hot.stats("lone")
    assert middle["alone_units"] - before["alone_units"] == 1
    assert alone_s < BUSY_WAIT_S, "a request alone did not wait for company"
    assert new_batches(before, middle) == [len(DOCS)]

    # A burst: the first requests may reach the replica one after another, each alone and batched
    # at once; those that find company wait for each other and share one batch. Bursts repeat
    # until at least two requests had company and none of them rode along in a lone request's
    # batch, which flushes at once (the threads' timing decides how many do).
    for _ in range(5):
        answers = burst(hot, "lone-only", n=4)
        assert {r.status_code for r in answers} == {200}
        after = hot.stats("lone")
        alone = after["alone_units"] - middle["alone_units"]
        batches = new_batches(middle, after)
        assert sum(batches) == 4 * len(DOCS), batches
        if alone <= 2 and max(batches) >= (4 - alone) * len(DOCS):
            break
        middle = after
    assert alone <= 2, "no burst had two requests in the replica at once"
    assert len(batches) <= alone + 1, batches
    assert max(batches) >= (4 - alone) * len(DOCS), batches


def test_the_chain_routes_around_a_full_model(hot: HotApp) -> None:
    answers = burst(hot, "busy-then-api")
    assert {r.status_code for r in answers} == {200}
    bodies = [r.json() for r in answers]
    assert any(b["backend"] == "busy" and not b["fallback"] for b in bodies), bodies
    assert any(
        b["backend"] == "co" and b["fallback"] and b["skipped"][0]["backend"] == "busy"
        for b in bodies
    ), bodies
    assert not any(b["degraded"] for b in bodies)


def scores(body: dict[str, Any]) -> dict[int, float]:
    return {r["index"]: r["raw_score"] for r in body["results"]}


def test_a_repeated_request_is_answered_from_the_cache(hot: HotApp) -> None:
    body = {"query": "cache " + EX.query, "documents": DOCS, "model": "cached"}
    before = hot.stats("cached")["cache"]
    first = hot.post(body).json()
    middle = hot.stats("cached")
    assert middle["cache"]["misses"] - before["misses"] == len(DOCS)
    assert middle["cache"]["hits"] == before["hits"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: hot.post(body), range(8)))
    repeats = [a.json() for a in answers]
    # Each repeat says it was answered from the cache: no pair reached the model.
    assert {(a.headers["X-Cached-Pairs"], a.headers["X-Pairs"]) for a in answers} == {(str(len(DOCS)), "0")}
    after = hot.stats("cached")
    assert after["cache"]["hits"] - middle["cache"]["hits"] == 8 * len(DOCS)
    assert after["cache"]["misses"] == middle["cache"]["misses"]
    assert after["pairs"] == middle["pairs"], "no pair reached the model"
    assert all(scores(r) == scores(first) for r in repeats)
    assert first["results"][0]["index"] == len(DOCS) - 1


def test_a_changed_model_does_not_answer_from_the_old_cache(hot: HotApp) -> None:
    from ray import serve

    from deployments.app import build_app

    long_docs = [d + " and more words" * 10 for d in DOCS]
    body = {"query": "invalidation " + EX.query, "documents": long_docs, "model": "cached"}
    full = scores(hot.post(body).json())
    backends = dict(hot.config["backends"])
    backends["cached"] = {**backends["cached"], "max_length": 16}
    serve.run(
        build_app({"service": {**hot.config, "backends": backends}}), name="hot", route_prefix="/hot"
    )
    try:
        cut = scores(hot.post(body).json())
        short = CrossEncoderBackend(
            "short", CrossEncoderConfig(model=str(hot.tiny), max_length=16, device="cpu")
        )
        expected = short.score_pairs([(body["query"], d) for d in long_docs])
        assert [cut[i] for i in range(len(DOCS))] == pytest.approx(expected, abs=1e-4)
        assert cut != full, "16 tokens of each document score differently from all of them"
        assert hot.stats("cached")["cache"]["hits"] == 0
    finally:
        serve.run(build_app({"service": hot.config}), name="hot", route_prefix="/hot")


def test_a_replica_tokenizes_on_one_thread_on_cpu_and_on_its_cpus_beside_a_gpu() -> None:
    def env(**serving: Any) -> dict[str, str]:
        config = CrossEncoderConfig(model="m", serving=serving)
        return model_deployment_options("m", config)["ray_actor_options"]["runtime_env"]["env_vars"]

    assert env(num_cpus=2) == {"OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    assert env(num_cpus=4, num_gpus=1, torch_threads=1) == {
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "true",
        "RAYON_NUM_THREADS": "4",
    }
