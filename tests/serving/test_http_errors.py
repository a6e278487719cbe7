"""The one table that maps the core's typed errors to HTTP statuses."""

from __future__ import annotations

from deployments.http_errors import STATUS, RouteError, status_of
from rerank_core import errors
from rerank_core.config import ConfigError


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
    assert status_of(RouteError("Method Not Allowed", 405)) == 405
    # Every class of the core's errors module is answered by the table, none by accident.
    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.RerankError)]
    assert all(any(issubclass(k, base) for base in STATUS) for k in kinds)
