"""The HTTP client and the LangChain compressor against real servers on loopback: the naive
cross-encoder server (a real model behind the ``/rerank`` contract) and the stub service (error
answers on cue)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rerank_core.benchmark.naive_server import NaiveServer
from rerank_core.client import AsyncRerankClient, RerankClient, RerankResponse, ServiceError
from rerank_core.errors import (
    AllBackendsFailed,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    MalformedBody,
    RerankError,
    Unauthorized,
    UnknownModel,
)
from rerank_core.types import Document
from tests.stubs.stub_service import build_stub_app, serve_in_thread
from tests.tiny_models import EXAMPLES, build_tiny_cross_encoder

KEY = "sk-test-secret-123"


@pytest.fixture(scope="module")
def naive_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model_dir = build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-ce")
    with NaiveServer(model_dir, threads=1) as server:
        yield server.url


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with serve_in_thread(build_stub_app(api_key=KEY)) as url:
        yield url


def _docs(example: object) -> list[str]:
    return [example.relevant, *example.irrelevant]  # type: ignore[attr-defined]


def test_sync_rerank_ranks_the_relevant_document_first(naive_url: str) -> None:
    with RerankClient(naive_url) as client:
        for example in EXAMPLES:
            response = client.rerank(example.query, _docs(example), top_n=2)
            assert isinstance(response, RerankResponse)
            assert [r.index for r in response.results][:1] == [0]
            assert len(response.results) == 2
            assert response.results[0].document == example.relevant
            assert response.results[0].score >= response.results[1].score
            assert 0.0 <= response.results[1].score <= 1.0
            assert response.backend == "tiny-ce"
            assert not response.fallback and not response.degraded


def test_documents_as_objects_keep_id_and_metadata(naive_url: str) -> None:
    example = EXAMPLES[1]
    docs = [
        Document(example.relevant, id="rel", metadata={"source": "a"}),
        {"text": example.irrelevant[0], "id": "irr"},
    ]
    with RerankClient(naive_url) as client:
        response = client.rerank(example.query, docs)
        bare = client.rerank(example.query, docs, return_documents=False)
    assert [(r.id, r.metadata) for r in response.results] == [("rel", {"source": "a"}), ("irr", None)]
    assert all(r.document is None and r.id is None for r in bare.results)


async def test_async_client_rerank_models_and_health(naive_url: str) -> None:
    example = EXAMPLES[2]
    async with AsyncRerankClient(naive_url) as client:
        response = await client.rerank(example.query, _docs(example), model="anything")
        assert response.results[0].index == 0
        assert len(response.results) == 4
        assert response.model == "anything"
        assert (await client.health())["status"] == "ok"
        assert (await client.models())["data"][0]["id"] == "tiny-ce"


def test_validation_error_of_a_real_server_maps_to_invalid_request(naive_url: str) -> None:
    with RerankClient(naive_url) as client, pytest.raises(InvalidRequest) as info:
        client.rerank("", ["a document"])
    assert info.value.field == "query"


@pytest.mark.parametrize(
    ("query", "error", "status"),
    [
        ("error:404:unknown_model", UnknownModel, 404),
        ("error:429:rate_limited", BackendRateLimited, 429),
        ("error:503:backend_unavailable", BackendUnavailable, 503),
        ("error:504:backend_timeout", BackendTimeout, 504),
        ("error:422:invalid_request", InvalidRequest, 422),
        ("error:400:malformed_body", MalformedBody, 400),
        # No type this project knows: the status decides ...
        ("error:429:slow_down", BackendRateLimited, 429),
        # ... and where neither fits, a ServiceError carries both.
        ("error:418:teapot", ServiceError, 418),
    ],
)
def test_error_bodies_map_to_typed_errors(
    stub_url: str, query: str, error: type[RerankError], status: int
) -> None:
    with RerankClient(stub_url, api_key=KEY) as client, pytest.raises(error) as info:
        client.rerank(query, ["doc"])
    assert type(info.value) is error
    assert info.value.http_status == status
    assert info.value.message.startswith("stub ")
    if error is UnknownModel:
        assert info.value.field == "model"
    if error is ServiceError:
        assert (info.value.status, info.value.type) == (418, "teapot")


def test_all_backends_failed_keeps_the_skipped_list(stub_url: str) -> None:
    with RerankClient(stub_url, api_key=KEY) as client, pytest.raises(AllBackendsFailed) as info:
        client.rerank("error:503:all_backends_failed", ["doc"])
    assert info.value.skipped == [{"backend": "a", "reason": "backend_timeout"}]


def test_non_json_and_malformed_answers(stub_url: str) -> None:
    with RerankClient(stub_url, api_key=KEY) as client:
        with pytest.raises(ServiceError) as info:
            client.rerank("notjson", ["doc"])
        assert (info.value.status, info.value.type) == (502, "http_error")
        with pytest.raises(BackendUnavailable, match="lacks a valid field"):
            client.rerank("malformed", ["doc"])


def test_api_key_is_sent_and_never_shown(stub_url: str) -> None:
    with RerankClient(stub_url, api_key=KEY) as client:
        assert client.rerank("cat", ["a cat", "a dog"]).results[0].index == 0
        assert KEY not in repr(client)
    with RerankClient(stub_url, api_key="wrong") as client, pytest.raises(Unauthorized) as info:
        client.rerank("cat", ["a cat"])
    assert KEY not in str(info.value) and "wrong" not in str(info.value)


def test_timeout_and_connection_refused_are_retryable_errors(stub_url: str) -> None:
    with RerankClient(stub_url, api_key=KEY, timeout=0.3) as client, pytest.raises(BackendTimeout):
        client.rerank("slow", ["doc"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with (
            RerankClient(f"http://127.0.0.1:{closed_port}") as client,
            pytest.raises(BackendUnavailable) as info,
        ):
            client.rerank("q", ["doc"])
    assert info.value.retryable


def test_health_report_is_returned_even_when_unhealthy() -> None:
    with serve_in_thread(build_stub_app(healthy=False)) as url, RerankClient(url) as client:
        report = client.health()
    assert report["status"] == "unavailable"
    assert report["backends"]["overlap"]["state"] == "unavailable"


async def test_async_client_maps_errors_too(stub_url: str) -> None:
    async with AsyncRerankClient(stub_url, api_key=KEY) as client:
        with pytest.raises(BackendRateLimited):
            await client.rerank("error:429:rate_limited", ["doc"])


def test_langchain_compressor_returns_top_n_with_scores(naive_url: str) -> None:
    from langchain_core.documents import Document as LCDocument

    from rerank_core.integrations.langchain import RerankServiceCompressor

    example = EXAMPLES[3]
    docs = [LCDocument(page_content=t, metadata={"n": i}) for i, t in enumerate(_docs(example))]
    docs.reverse()  # the relevant document last, so the order must come from the service
    compressor = RerankServiceCompressor(base_url=naive_url, top_n=2)
    picked = compressor.compress_documents(docs, example.query)
    assert len(picked) == 2
    assert picked[0].page_content == example.relevant
    assert picked[0].metadata["n"] == 0
    scores = [d.metadata["relevance_score"] for d in picked]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert "relevance_score" not in docs[-1].metadata  # the inputs are left untouched
    assert compressor.compress_documents([], example.query) == []


async def test_langchain_compressor_async(naive_url: str) -> None:
    from langchain_core.documents import Document as LCDocument

    from rerank_core.integrations.langchain import RerankServiceCompressor

    example = EXAMPLES[0]
    docs = [LCDocument(page_content=t) for t in reversed(_docs(example))]
    picked = await RerankServiceCompressor(base_url=naive_url, top_n=1).acompress_documents(
        docs, example.query
    )
    assert [d.page_content for d in picked] == [example.relevant]


def test_rerank_core_does_not_import_langchain() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rerank_core.client, rerank_core.integrations; assert 'langchain_core' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_every_error_type_of_the_service_maps_to_a_typed_error() -> None:
    from rerank_core import errors
    from rerank_core.client import _TYPED, error_from_response

    assert "http_error" in _TYPED and "malformed_body" in _TYPED
    for code, cls in _TYPED.items():
        err = error_from_response(418, {"error": {"type": code, "message": "m", "field": "f"}})
        assert isinstance(err, cls) and isinstance(err, errors.RerankError), code
    routed = error_from_response(405, {"error": {"type": "http_error", "message": "Method Not Allowed"}})
    assert routed.http_status == 405
