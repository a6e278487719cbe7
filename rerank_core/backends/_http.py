"""What the vendor rerank API backends share: the call skeleton, typed errors from transport
failures and vendor bodies, and the checking of a vendor's ranked results.

Error messages are written here from status codes, exception messages and the vendor's own
message field, and any occurrence of the API key is masked before a message leaves this module.
Backends raise these errors ``from None``: an SDK or httpx exception may carry the request, whose
headers hold the key, and a chained cause would take it wherever the error goes.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable
from typing import Generic, TypeVar

import httpx
from pydantic import SecretStr

from rerank_core.backends.base import Backend
from rerank_core.config import ApiConfig
from rerank_core.errors import (
    BackendAuthError,
    BackendBadRequest,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
)
from rerank_core.types import Answer, RankRequest, Scored, clamp01, top_n_of

#: Longest vendor message kept in an error.
_MAX_DETAIL = 200

C = TypeVar("C", bound=ApiConfig)


def error_for_status(status: int, backend: str, detail: str = "") -> BackendError:
    """Map a vendor HTTP status to the typed error the chain understands."""
    suffix = f": {detail}" if detail else ""
    if status == 429:
        return BackendRateLimited(f"{backend} answered 429 (rate limited){suffix}", backend=backend)
    if status in (401, 403):
        return BackendAuthError(f"{backend} rejected the credentials ({status})", backend=backend)
    if status == 408:
        return BackendTimeout(f"{backend} answered 408 (timeout){suffix}", backend=backend)
    if status >= 500:
        return BackendUnavailable(f"{backend} answered {status}{suffix}", backend=backend)
    return BackendBadRequest(f"{backend} answered {status}{suffix}", backend=backend)


class ApiBackend(Backend, Generic[C]):
    """A vendor's rerank endpoint behind the ``Backend`` interface.

    ``answer`` answers an empty list without a call, resolves the key at call time (a missing key
    is a ``BackendAuthError``, so the service can start and report it), asks the vendor for at most
    ``len(documents)`` results, and checks what comes back: every index a position in
    ``documents``, each at most once, every score a number; scores are clamped into [0, 1].
    """

    def __init__(self, name: str, config: C) -> None:
        self.name = name
        self.config = config

    async def answer(self, request: RankRequest) -> Answer:
        # Vendors truncate long documents on their side; ``long_documents`` does not apply.
        documents = request.documents
        if not documents:
            return Answer([])
        key = self.config.api_key()
        if key is None:
            where = f"the environment variable {self.config.api_key_env}"
            if self.config.api_key_file:
                where = f"{self.config.api_key_file} or {where}"
            raise BackendAuthError(f"{self.name} has no API key: set {where}", backend=self.name)
        top_n = request.top_n
        asked = None if top_n is None else min(top_n, len(documents))
        pairs = await self._request(request.query, list(documents), asked, key)
        return Answer(ranked(pairs, len(documents), self.name, top_n, key))

    @abc.abstractmethod
    async def _request(
        self, query: str, documents: list[str], top_n: int | None, key: SecretStr
    ) -> Iterable[tuple[object, object]]:
        """One call to the vendor, returning ``(index, relevance_score)`` as the vendor gave them.

        Raises a ``BackendError`` for every failure of the call or of the body's outer shape.
        """


def redact(text: str, key: SecretStr | None) -> str:
    """``text`` with every occurrence of the key masked."""
    secret = key.get_secret_value() if key is not None else ""
    return text.replace(secret, "***") if secret else text


def vendor_detail(body: object, field: str, key: SecretStr | None) -> str:
    """The vendor's message from an error body (a dict, or JSON text), short and key-free."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return ""
    message = body.get(field) if isinstance(body, dict) else None
    if not isinstance(message, str):
        return ""
    return redact(message, key)[:_MAX_DETAIL]


def status_error(
    status: int, backend: str, body: object, field: str, key: SecretStr | None
) -> BackendError:
    """The typed error for a vendor's non-2xx answer, with the vendor's message where it gave one."""
    return error_for_status(status, backend, vendor_detail(body, field, key))


def malformed(backend: str, what: str) -> BackendUnavailable:
    """A 2xx answer this project cannot read: retryable, as another try or backend may do better."""
    return BackendUnavailable(f"{backend} sent an unreadable answer: {what}", backend=backend)


def timed_out(backend: str, timeout_s: float) -> BackendTimeout:
    """The vendor did not answer within the configured timeout."""
    return BackendTimeout(f"{backend} did not answer within {timeout_s:g}s", backend=backend)


def unreachable(backend: str, exc: BaseException, key: SecretStr | None) -> BackendUnavailable:
    """Connection refused, reset or broken: the vendor cannot be reached now."""
    reason = redact(str(exc), key)[:_MAX_DETAIL] or type(exc).__name__
    return BackendUnavailable(f"cannot reach {backend}: {reason}", backend=backend)


def transport_error(
    exc: httpx.RequestError, backend: str, timeout_s: float, key: SecretStr | None
) -> BackendError:
    """The typed error for an httpx failure below HTTP (timeout, refused, reset, protocol)."""
    if isinstance(exc, httpx.TimeoutException):
        return timed_out(backend, timeout_s)
    return unreachable(backend, exc, key)


def ranked(
    pairs: Iterable[tuple[object, object]],
    n_documents: int,
    backend: str,
    top_n: int | None,
    key: SecretStr | None = None,
) -> list[Scored]:
    """Check the vendor's ``(index, relevance_score)`` pairs and rank them, best first.

    Raises ``BackendUnavailable`` for an index that is not an integer position in the input (or
    repeats) and for a score that is not a number.
    """
    seen: set[int] = set()
    results: list[Scored] = []
    for index, raw in pairs:
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not 0 <= index < n_documents
            or index in seen
        ):
            what = redact(repr(index), key)[:_MAX_DETAIL]
            raise malformed(backend, f"result index {what} is not a position among the documents")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise malformed(backend, f"result {index} has no numeric relevance_score")
        seen.add(index)
        score = clamp01(float(raw))
        raw_score = None if score == raw else float(raw)
        results.append(Scored(index=index, score=score, raw_score=raw_score))
    return top_n_of(results, top_n)
