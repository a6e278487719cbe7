"""What every API backend promises, checked once for Cohere, Jina and Voyage against their stubs
with the real SDKs (or httpx): typed errors in one attempt, no call for nothing, keys read at call
time and never shown. Vendor-specific shapes and statuses stay in each vendor's own test file."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest

from rerank_core.backends.base import Backend
from rerank_core.backends.cohere import CohereBackend
from rerank_core.backends.jina import JinaBackend
from rerank_core.backends.voyage import VoyageBackend
from rerank_core.config import CohereConfig, JinaConfig, VoyageConfig
from rerank_core.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
)
from tests.stubs.vendors import CohereStub, JinaStub, VendorStub, VoyageStub, closed_port_url

KEY_ENV = "TEST_API_CONTRACT_KEY"
QUERY = "how do cats sleep"
DOCS = ["cats sleep most of the day", "dogs bark", "how cats groom"]


@dataclass(frozen=True)
class Vendor:
    name: str
    stub_class: type[VendorStub]
    make: Callable[[str], Backend]
    key: str


VENDORS = [
    Vendor(
        "cohere",
        CohereStub,
        lambda url: CohereBackend("cohere", CohereConfig(base_url=url, api_key_env=KEY_ENV, timeout_s=0.5)),
        "co-contract-key-1b7e",
    ),
    Vendor(
        "jina",
        JinaStub,
        lambda url: JinaBackend("jina", JinaConfig(base_url=url, api_key_env=KEY_ENV, timeout_s=0.5)),
        "jina_contract_key_5d20",
    ),
    Vendor(
        "voyage",
        VoyageStub,
        lambda url: VoyageBackend("voyage", VoyageConfig(base_url=url, api_key_env=KEY_ENV, timeout_s=0.5)),
        "pa-contract-key-0c9f",
    ),
]


@pytest.fixture(params=VENDORS, ids=[v.name for v in VENDORS])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.param


@pytest.fixture
def stub(vendor: Vendor) -> Iterator[VendorStub]:
    with vendor.stub_class(api_key=vendor.key) as running:
        yield running


@pytest.fixture
async def backend(
    vendor: Vendor, stub: VendorStub, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    monkeypatch.setenv(KEY_ENV, vendor.key)
    made = vendor.make(stub.base_url)
    yield made
    await made.close()


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("429", BackendRateLimited),
        ("500", BackendUnavailable),
        ("401", BackendAuthError),
        ("403", BackendAuthError),
        ("slow", BackendTimeout),
    ],
)
async def test_vendor_failure_maps_to_typed_error_in_one_attempt(
    vendor: Vendor, backend: Backend, stub: VendorStub, behaviour: str, expected: type[BackendError]
) -> None:
    stub.set_behaviour(behaviour, slow_s=3.0)
    with pytest.raises(expected) as caught:
        await backend.rerank(QUERY, DOCS)
    assert caught.value.backend == vendor.name
    assert stub.calls == 1, "the SDK's own retries are off: the fallback chain retries"


async def test_empty_documents_make_no_call(backend: Backend, stub: VendorStub) -> None:
    assert await backend.rerank(QUERY, []) == []
    assert stub.calls == 0


async def test_connection_refused_is_unavailable(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, vendor.key)
    backend = vendor.make(closed_port_url())
    try:
        with pytest.raises(BackendUnavailable, match="cannot reach") as caught:
            await backend.rerank(QUERY, DOCS)
    finally:
        await backend.close()
    assert vendor.key not in str(caught.value) + caplog.text


async def test_missing_key_is_an_auth_error_raised_at_call_time(
    vendor: Vendor, stub: VendorStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    # An SDK may fall back to its own variable; the configured one is the truth.
    for own in ("CO_API_KEY", "JINA_API_KEY", "VOYAGE_API_KEY"):
        monkeypatch.setenv(own, vendor.key)
    backend = vendor.make(stub.base_url)
    try:
        with pytest.raises(BackendAuthError, match=KEY_ENV):
            await backend.rerank(QUERY, DOCS)
    finally:
        await backend.close()
    assert stub.calls == 0


@pytest.mark.parametrize("behaviour", ["401", "403", "500", "400", "malformed"])
async def test_key_never_appears_in_errors_repr_or_logs(
    vendor: Vendor,
    backend: Backend,
    stub: VendorStub,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    stub.set_behaviour(behaviour)
    with pytest.raises(BackendError) as caught:
        await backend.rerank(QUERY, DOCS)
    for text in (str(caught.value), repr(caught.value), repr(backend), caplog.text):
        assert vendor.key not in text
    assert caught.value.__cause__ is None
    assert stub.last_request.bearer == vendor.key, "the stub got the key, so leaking it was possible"
