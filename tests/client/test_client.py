"""The HTTP client's error mapping and transport failures, against the stub service on loopback
(error answers on cue). Its reranking against the real Router app: tests/serving/test_client.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from rerank_client.client import AsyncRerankClient, RerankClient
from rerank_client.errors import MalformedAnswer, ServiceError, ServiceTimeout, ServiceUnreachable
from rerank_core.errors import (
    AllBackendsFailed,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    MalformedBody,
    RerankError,
    Unauthorized,
    UnknownModel,
)
from rerank_wire.status import status_of
from tests.stubs.stub_service import build_stub_app, serve_in_thread

KEY = "sk-test-secret-123"


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with serve_in_thread(build_stub_app(api_key=KEY)) as url:
        yield url


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
    assert status_of(info.value) == status
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
        with pytest.raises(MalformedAnswer, match="lacks a valid field"):
            client.rerank("malformed", ["doc"])


def test_api_key_is_sent_and_never_shown(stub_url: str) -> None:
    with RerankClient(stub_url, api_key=KEY) as client:
        assert client.rerank("cat", ["a cat", "a dog"]).results[0].index == 0
        assert KEY not in repr(client)
    with RerankClient(stub_url, api_key="wrong") as client, pytest.raises(Unauthorized) as info:
        client.rerank("cat", ["a cat"])
    assert KEY not in str(info.value) and "wrong" not in str(info.value)


def test_timeout_and_connection_refused_are_retryable_errors(stub_url: str) -> None:
    with RerankClient(stub_url, api_key=KEY, timeout=0.3) as client, pytest.raises(ServiceTimeout):
        client.rerank("slow", ["doc"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with (
            RerankClient(f"http://127.0.0.1:{closed_port}") as client,
            pytest.raises(ServiceUnreachable) as info,
        ):
            client.rerank("q", ["doc"])
    assert info.value.retryable
    # The client's own failure, not one of the service's backends.
    assert not isinstance(info.value, BackendError)


def test_health_report_is_returned_even_when_unhealthy() -> None:
    with serve_in_thread(build_stub_app(healthy=False)) as url, RerankClient(url) as client:
        report = client.health()
    assert report["status"] == "unavailable"
    assert report["backends"]["overlap"]["state"] == "unavailable"


async def test_async_client_maps_errors_too(stub_url: str) -> None:
    async with AsyncRerankClient(stub_url, api_key=KEY) as client:
        with pytest.raises(BackendRateLimited):
            await client.rerank("error:429:rate_limited", ["doc"])


def test_the_client_does_not_import_langchain() -> None:
    import subprocess
    import sys

    code = "import sys, rerank_client, rerank_client.client; assert 'langchain_core' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_error_type_of_the_service_maps_to_a_typed_error() -> None:
    from rerank_client.errors import _TYPED, error_from_response
    from rerank_core import errors

    assert "http_error" in _TYPED and "malformed_body" in _TYPED
    for code, cls in _TYPED.items():
        err = error_from_response(418, {"error": {"type": code, "message": "m", "field": "f"}})
        assert isinstance(err, cls) and isinstance(err, errors.RerankError), code
    routed = error_from_response(405, {"error": {"type": "http_error", "message": "Method Not Allowed"}})
    assert status_of(routed) == 405
