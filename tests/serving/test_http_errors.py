"""The one table that maps the core's typed errors to HTTP statuses, and the Router's answers by it."""

from __future__ import annotations

from typing import Any

from rerank_core import errors
from rerank_core.config import ConfigError
from rerank_wire.status import STATUS, HttpError, status_of


def test_every_error_kind_has_its_status() -> None:
    expected = {
        errors.MalformedBody: 400,
        errors.Unauthorized: 401,
        errors.UnknownModel: 404,
        errors.PayloadTooLarge: 413,
        errors.UnsupportedMediaType: 415,
        errors.InvalidRequest: 422,
        errors.BackendBadRequest: 424,
        errors.BackendAuthError: 424,
        errors.BackendRateLimited: 429,
        errors.BackendUnavailable: 503,
        errors.BackendTimeout: 504,
        ConfigError: 500,
    }
    for cls, status in expected.items():
        assert status_of(cls("m")) == status, cls
    assert status_of(errors.AllBackendsFailed("m", skipped=[])) == 503
    assert status_of(HttpError("Method Not Allowed", 405)) == 405
    # Every class of the core's errors module is answered by the table, none by accident.
    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.RerankError)]
    assert all(any(issubclass(k, base) for base in STATUS) for k in kinds)


def error_app(retry_after_s: float) -> Any:
    """A FastAPI app answering its errors as the Router does."""
    from fastapi import FastAPI

    from deployments.http_errors import install_error_handlers
    from deployments.middleware import RequestIdMiddleware

    api = FastAPI()
    api.add_middleware(RequestIdMiddleware)
    api.state.retry_after_s = retry_after_s
    install_error_handlers(api)
    return api


def test_a_refusal_that_knows_when_to_come_back_says_so() -> None:
    from fastapi.testclient import TestClient

    api = error_app(1.0)

    @api.get("/queue-full")
    async def queue_full() -> None:
        raise errors.BackendRateLimited("full", backend="m", retry_after_s=6.2)

    @api.get("/vendor-429")
    async def vendor_429() -> None:
        raise errors.BackendRateLimited("429", backend="co")

    client = TestClient(api)
    assert client.get("/queue-full").headers["Retry-After"] == "7"
    assert client.get("/vendor-429").headers["Retry-After"] == "1"


def test_a_refusal_for_overload_is_held_and_its_retry_after_counts_what_is_left() -> None:
    import time

    from fastapi.testclient import TestClient

    api = error_app(0.2)
    api.state.refusal_hold_s = 0.5

    @api.get("/long-queue")
    async def long_queue() -> None:
        raise errors.BackendRateLimited("full", backend="m", retry_after_s=6.0)

    @api.get("/short-wait")
    async def short_wait() -> None:
        raise errors.BackendRateLimited("429", backend="co")  # the configured 0.2 s

    @api.get("/bad")
    async def bad() -> None:
        raise errors.InvalidRequest("no")

    client = TestClient(api)

    def took(path: str, status: int) -> float:
        started = time.perf_counter()
        assert client.get(path).status_code == status
        return time.perf_counter() - started

    assert took("/long-queue", 429) >= 0.5  # the hold
    assert client.get("/long-queue").headers["Retry-After"] == "6"  # 5.5 s left after the hold
    assert took("/short-wait", 429) >= 0.5  # the hold, though its Retry-After was shorter
    assert client.get("/short-wait").headers["Retry-After"] == "0"  # nothing left: come back now
    api.state.refusal_hold_s = 0.0
    assert took("/long-queue", 429) < 0.5  # 0: at once
    api.state.refusal_hold_s = 30.0
    assert took("/bad", 422) < 30.0  # only refusals for overload are held
