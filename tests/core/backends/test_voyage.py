"""VoyageBackend through the real ``voyageai`` SDK against the Voyage stub."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rerank_core.backends.voyage import VoyageBackend, api_base
from rerank_core.config import VoyageConfig
from rerank_core.errors import (
    BackendBadRequest,
    BackendError,
    BackendUnavailable,
)
from tests.stubs.vendors import VoyageStub, stub_fixture

KEY = "pa-test-key-77b0c3"
KEY_ENV = "TEST_VOYAGE_BACKEND_KEY"
QUERY = "rust memory safety"
DOCS = [
    "memory safety without garbage collection in rust",
    "python garbage collection",
    "safety rules for climbing",
    "rust on old cars",
]
#: Word overlap with QUERY: 3/3, 0, 1/3, 1/3 (ties in input order).
EXPECTED_ORDER = [0, 2, 3, 1]

stub = stub_fixture(VoyageStub, api_key=KEY)


def make_backend(base_url: str, **overrides: object) -> VoyageBackend:
    config = VoyageConfig(base_url=base_url, api_key_env=KEY_ENV, timeout_s=0.5, **overrides)
    return VoyageBackend("voyage", config)


@pytest.fixture
async def backend(stub: VoyageStub, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VoyageBackend]:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = make_backend(stub.base_url, truncation=False)
    yield backend
    await backend.close()


async def test_ranks_best_first_and_sends_voyage_request(
    backend: VoyageBackend, stub: VoyageStub
) -> None:
    results = await backend.rerank(QUERY, DOCS, top_n=3)

    assert [r.index for r in results] == EXPECTED_ORDER[:3]
    assert [r.score for r in results] == pytest.approx([1.0, 1 / 3, 1 / 3])
    sent = stub.last_request
    assert sent.path == "/v1/rerank"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "query": QUERY,
        "documents": DOCS,
        "model": "rerank-2",
        "top_k": 3,
        "truncation": False,
    }


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_with_or_without_v1(
    stub: VoyageStub, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)

    results = await make_backend(stub.base_url + suffix).rerank(QUERY, DOCS)

    assert [r.index for r in results] == EXPECTED_ORDER
    assert stub.last_request.path == "/v1/rerank"
    assert stub.last_request.json["truncation"] is True
    assert stub.last_request.json["top_k"] is None


def test_no_base_url_leaves_the_sdk_default() -> None:
    assert api_base(None) is None


async def test_top_n_beyond_the_documents_is_capped(
    backend: VoyageBackend, stub: VoyageStub
) -> None:
    results = await backend.rerank(QUERY, DOCS[:2], top_n=9)

    assert [r.index for r in results] == [0, 1]
    assert stub.last_request.json["top_k"] == 2


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("503", BackendUnavailable),
        ("400", BackendBadRequest),
        ("422", BackendBadRequest),
    ],
)
async def test_vendor_failure_maps_to_typed_error(
    backend: VoyageBackend, stub: VoyageStub, behaviour: str, expected: type[BackendError]
) -> None:
    stub.set_behaviour(behaviour, slow_s=3.0)

    with pytest.raises(expected) as caught:
        await backend.rerank(QUERY, DOCS)

    assert caught.value.backend == "voyage"
    # One attempt only: the SDK retries only when max_retries > 0.
    assert stub.calls == 1


async def test_voyage_detail_is_kept_in_the_error_with_the_key_masked(
    backend: VoyageBackend, stub: VoyageStub
) -> None:
    stub.set_behaviour("400", error_message=f"top_k too large for {KEY}")

    with pytest.raises(BackendBadRequest, match=r"top_k too large for \*\*\*"):
        await backend.rerank(QUERY, DOCS)


@pytest.mark.parametrize(
    "body",
    [
        b'{"object": "list", "data": [{"index": 0, "relev',
        b"[]",
        b'{"object": "list", "usage": {"total_tokens": 1}}',
        b'{"data": [{"index": 0, "relevance_score": 0.5}]}',
        b'{"data": [{"index": 7, "relevance_score": 0.5}], "usage": {"total_tokens": 1}}',
        b'{"data": [{"index": -1, "relevance_score": 0.5}], "usage": {"total_tokens": 1}}',
        b'{"data": [{"index": 0, "relevance_score": null}], "usage": {"total_tokens": 1}}',
        b"\xff\xfe not utf-8",
    ],
    ids=["truncated", "list", "no-data", "no-usage", "index-range", "negative", "null-score", "bytes"],
)
async def test_unreadable_body_is_unavailable(
    backend: VoyageBackend, stub: VoyageStub, body: bytes
) -> None:
    stub.set_behaviour("malformed", malformed_body=body)

    with pytest.raises(BackendUnavailable, match="unreadable"):
        await backend.rerank(QUERY, DOCS)

