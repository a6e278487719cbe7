"""JinaBackend over real HTTP (httpx) against the Jina stub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from rerank_core.backends.jina import JinaBackend
from rerank_core.config import JinaConfig
from rerank_core.errors import (
    BackendAuthError,
    BackendBadRequest,
    BackendError,
    BackendUnavailable,
)
from tests.stubs.vendors import JinaStub, stub_fixture

KEY = "jina_test_key_8c2d41"
KEY_ENV = "TEST_JINA_BACKEND_KEY"
QUERY = "solar panel efficiency"
DOCS = [
    "wind turbines in winter",
    "panel efficiency of solar cells",
    "solar eclipse photos",
]
#: Word overlap with QUERY: 0, 3/3, 1/3.
EXPECTED_ORDER = [1, 2, 0]

stub = stub_fixture(JinaStub, api_key=KEY)


def make_backend(base_url: str, **overrides: object) -> JinaBackend:
    config = JinaConfig(base_url=base_url, api_key_env=KEY_ENV, timeout_s=0.5, **overrides)
    return JinaBackend("jina", config)


@pytest.fixture
async def backend(stub: JinaStub, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[JinaBackend]:
    monkeypatch.setenv(KEY_ENV, KEY)
    # A trailing slash in configuration must not double the path's.
    backend = make_backend(stub.base_url + "/", model="jina-reranker-v2-base-multilingual")
    yield backend
    await backend.close()


async def test_ranks_best_first_and_sends_jina_request(backend: JinaBackend, stub: JinaStub) -> None:
    results = await backend.rerank(QUERY, DOCS, top_n=2)

    assert [r.index for r in results] == EXPECTED_ORDER[:2]
    assert [r.score for r in results] == pytest.approx([1.0, 1 / 3])
    sent = stub.last_request
    assert sent.path == "/v1/rerank"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": "jina-reranker-v2-base-multilingual",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 2,
        "return_documents": False,
    }


async def test_no_top_n_returns_all(backend: JinaBackend, stub: JinaStub) -> None:
    results = await backend.rerank(QUERY, DOCS)

    assert [r.index for r in results] == EXPECTED_ORDER
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert "top_n" not in stub.last_request.json


async def test_top_n_beyond_the_documents_is_capped(backend: JinaBackend, stub: JinaStub) -> None:
    results = await backend.rerank(QUERY, DOCS, top_n=50)

    assert len(results) == len(DOCS)
    assert stub.last_request.json["top_n"] == len(DOCS)


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("502", BackendUnavailable),
        ("422", BackendBadRequest),
    ],
)
async def test_vendor_failure_maps_to_typed_error(
    backend: JinaBackend, stub: JinaStub, behaviour: str, expected: type[BackendError]
) -> None:
    stub.set_behaviour(behaviour, slow_s=3.0)

    with pytest.raises(expected) as caught:
        await backend.rerank(QUERY, DOCS)

    assert caught.value.backend == "jina"
    assert stub.calls == 1


async def test_jina_detail_is_kept_in_the_error_with_the_key_masked(
    backend: JinaBackend, stub: JinaStub
) -> None:
    stub.set_behaviour("400", error_message=f"query is too long for {KEY}")

    with pytest.raises(BackendBadRequest, match=r"query is too long for \*\*\*"):
        await backend.rerank(QUERY, DOCS)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        b'"results"',
        b'{"model": "m", "usage": {}}',
        b'{"results": ["a"]}',
        b'{"results": [{"index": 3, "relevance_score": 0.5}]}',
        b'{"results": [{"index": true, "relevance_score": 0.5}]}',
        b'{"results": [{"index": 0, "relevance_score": "high"}]}',
        b"\xff\xfe not utf-8",
    ],
    ids=["html", "string", "no-results", "str-item", "index-range", "bool-index", "str-score", "bytes"],
)
async def test_unreadable_body_is_unavailable(
    backend: JinaBackend, stub: JinaStub, body: bytes
) -> None:
    stub.set_behaviour("malformed", malformed_body=body)

    with pytest.raises(BackendUnavailable, match="unreadable"):
        await backend.rerank(QUERY, DOCS)


async def test_rotated_key_is_used_without_a_restart(
    backend: JinaBackend, stub: JinaStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "jina_rotated_key")

    with pytest.raises(BackendAuthError):
        await backend.rerank(QUERY, DOCS)

    assert stub.last_request.bearer == "jina_rotated_key"


async def test_a_fraction_of_calls_fail_deterministically(
    backend: JinaBackend, stub: JinaStub
) -> None:
    stub.set_failures(0.5, status=503)

    outcomes = []
    for _ in range(4):
        try:
            await backend.rerank(QUERY, DOCS)
            outcomes.append("ok")
        except BackendUnavailable:
            outcomes.append("503")

    assert outcomes == ["ok", "503", "ok", "503"]


async def test_concurrent_calls_are_each_answered_and_recorded(
    backend: JinaBackend, stub: JinaStub
) -> None:
    queries = [f"solar query {i}" for i in range(16)]

    answers = await asyncio.gather(*(backend.rerank(q, DOCS, top_n=1) for q in queries))

    assert all(a[0].index == 1 for a in answers)
    assert sorted(r.json["query"] for r in stub.requests) == sorted(queries)


async def test_stub_returns_documents_by_default_like_jina(stub: JinaStub) -> None:
    # Jina's own default is return_documents=true; the backend turns it off (checked above).
    async with httpx.AsyncClient() as client:
        response = await client.post(
            stub.url,
            json={"model": "m", "query": QUERY, "documents": DOCS, "top_n": 1},
            headers={"Authorization": f"Bearer {KEY}"},
        )

    body = json.loads(response.content)
    assert body["results"] == [{"index": 1, "relevance_score": 1.0, "document": {"text": DOCS[1]}}]
    assert body["usage"]["total_tokens"] > 0
