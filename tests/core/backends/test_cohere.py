"""CohereBackend through the real ``cohere`` SDK against the Cohere stub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rerank_core.backends import build_backend
from rerank_core.backends.cohere import CohereBackend
from rerank_core.config import CohereConfig
from rerank_core.errors import (
    BackendAuthError,
    BackendBadRequest,
    BackendError,
    BackendUnavailable,
)
from tests.stubs.vendors import CohereStub, stub_fixture

KEY = "co-test-key-5f1e9a"
KEY_ENV = "TEST_COHERE_BACKEND_KEY"
QUERY = "how do cats sleep"
DOCS = [
    "dogs bark at night",
    "cats sleep most of the day",
    "how birds fly",
    "why cats purr",
]
#: Word overlap with QUERY: 0 for doc 0, 2/4 for doc 1, 1/4 for docs 2 and 3 (ties in input order).
EXPECTED_ORDER = [1, 2, 3, 0]

stub = stub_fixture(CohereStub, api_key=KEY)


def make_backend(base_url: str, **overrides: object) -> CohereBackend:
    config = CohereConfig(base_url=base_url, api_key_env=KEY_ENV, timeout_s=0.5, **overrides)
    return CohereBackend("cohere", config)


@pytest.fixture
async def backend(stub: CohereStub, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CohereBackend]:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = make_backend(stub.base_url, max_tokens_per_doc=512)
    yield backend
    await backend.close()


async def test_ranks_best_first_and_sends_cohere_v2_request(
    backend: CohereBackend, stub: CohereStub
) -> None:
    results = await backend.rerank(QUERY, DOCS, top_n=3)

    assert [r.index for r in results] == EXPECTED_ORDER[:3]
    assert results[0].score == pytest.approx(0.5)
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert all(r.raw_score is None for r in results)
    sent = stub.last_request
    assert sent.path == "/v2/rerank"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": "rerank-v3.5",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 3,
        "max_tokens_per_doc": 512,
    }


async def test_no_top_n_returns_all_and_sends_no_optional_fields(
    stub: CohereStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = build_backend("cohere", CohereConfig(base_url=stub.base_url, api_key_env=KEY_ENV))
    try:
        results = await backend.rerank(QUERY, DOCS)
    finally:
        await backend.close()

    assert isinstance(backend, CohereBackend)
    assert [r.index for r in results] == EXPECTED_ORDER
    assert "top_n" not in stub.last_request.json
    assert "max_tokens_per_doc" not in stub.last_request.json


async def test_top_n_beyond_the_documents_is_capped(
    backend: CohereBackend, stub: CohereStub
) -> None:
    results = await backend.rerank(QUERY, DOCS[:2], top_n=10)

    assert [r.index for r in results] == [1, 0]
    assert stub.last_request.json["top_n"] == 2


async def test_score_outside_unit_interval_is_clamped_and_raw_kept(
    backend: CohereBackend, stub: CohereStub
) -> None:
    body = {"id": "x", "results": [{"index": 1, "relevance_score": 1.7}]}
    stub.set_behaviour("malformed", malformed_body=json.dumps(body).encode())

    [result] = await backend.rerank(QUERY, DOCS)

    assert (result.index, result.score, result.raw_score) == (1, 1.0, 1.7)


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("503", BackendUnavailable),
        ("498", BackendAuthError),
        ("400", BackendBadRequest),
    ],
)
async def test_vendor_failure_maps_to_typed_error(
    backend: CohereBackend, stub: CohereStub, behaviour: str, expected: type[BackendError]
) -> None:
    stub.set_behaviour(behaviour, slow_s=3.0)

    with pytest.raises(expected) as caught:
        await backend.rerank(QUERY, DOCS)

    assert caught.value.backend == "cohere"
    # One attempt only: the SDK's own retries are off.
    assert stub.calls == 1


async def test_vendor_message_is_kept_in_the_error_with_the_key_masked(
    backend: CohereBackend, stub: CohereStub
) -> None:
    stub.set_behaviour("400", error_message=f"too many documents for {KEY}")

    with pytest.raises(BackendBadRequest, match=r"too many documents for \*\*\*"):
        await backend.rerank(QUERY, DOCS)


@pytest.mark.parametrize(
    "body",
    [
        b'{"results": [{"index": 0, "relevance_',
        b"[1, 2]",
        b'{"id": "x"}',
        b'{"results": [1]}',
        b'{"results": [{"index": 9, "relevance_score": 0.5}]}',
        b'{"results": [{"index": 0}]}',
        b'{"results": [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.4}]}',
        b"\xff\xfe not utf-8",
    ],
    ids=["truncated", "list", "no-results", "int-item", "index-range", "no-score", "dup", "bytes"],
)
async def test_unreadable_body_is_unavailable(
    backend: CohereBackend, stub: CohereStub, body: bytes
) -> None:
    stub.set_behaviour("malformed", malformed_body=body)

    with pytest.raises(BackendUnavailable, match="unreadable"):
        await backend.rerank(QUERY, DOCS)


async def test_key_from_a_mounted_file(
    stub: CohereStub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "co_key"
    key_file.write_text(KEY + "\n")
    backend = make_backend(stub.base_url, api_key_file=str(key_file))
    try:
        await backend.rerank(QUERY, DOCS)
    finally:
        await backend.close()
    assert stub.last_request.bearer == KEY


async def test_v1_endpoint_speaks_cohere_v1(stub: CohereStub) -> None:
    # The older endpoint, kept for clients such as LangChain's CohereRerank.
    async with httpx.AsyncClient() as client:
        response = await client.post(
            stub.base_url + "/v1/rerank",
            json={"query": QUERY, "documents": DOCS, "top_n": 1, "return_documents": True},
            headers={"Authorization": f"Bearer {KEY}"},
        )

    body = response.json()
    assert response.status_code == 200
    assert body["meta"]["api_version"]["version"] == "1"
    assert body["results"] == [
        {"index": 1, "relevance_score": 0.5, "document": {"text": DOCS[1]}}
    ]
