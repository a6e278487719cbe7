"""Stand-ins for the Cohere, Jina and Voyage rerank APIs, served over loopback for tests.

Each stub is a threaded HTTP server on ``127.0.0.1`` (a free port) speaking its vendor's documented
request and response shapes, so the real SDKs and the service's own HTTP clients talk to it
unchanged. It ranks by word overlap between the query and each document (deterministic, so a test
can assert an order), records every request it gets, and can be told to misbehave::

    with CohereStub(api_key="test-key") as stub:
        stub.set_behaviour("429")          # every call answers 429 in Cohere's error shape
        stub.set_failures(0.5, status=503) # or: every second call fails
        ...
        assert stub.last_request.json["model"] == "rerank-v3.5"

Behaviours: ``"ok"``; ``"slow"`` (wait ``slow_s`` seconds, then answer normally); ``"malformed"``
(a 200 whose body is ``malformed_body``: truncated JSON unless set); or an HTTP status as text
(``"429"``, ``"500"``, ``"401"``, ...) answered with the vendor's error body. A stub built with
``api_key`` answers 401 to any other bearer token, before any behaviour applies.

Stubs are thread-safe and may be shared by many concurrent clients (the Ray Serve integration tests
point replicas at them); ``close()`` wakes slow handlers, stops the server and joins its thread.
"""

from __future__ import annotations

import abc
import json
import math
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import pytest

#: What a malformed answer carries unless a test sets its own: JSON cut off mid-way.
TRUNCATED_JSON = b'{"results": [{"index": 0, "relevance_'

_WORD = re.compile(r"\w+")
_REASONS = {
    400: "invalid request",
    401: "invalid api token",
    403: "forbidden",
    404: "not found",
    408: "request timeout",
    422: "unprocessable entity",
    429: "too many requests, please slow down",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    #: The parsed JSON body, or None when the body was not JSON.
    json: Any

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer ...`` header, if any."""
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True)
class RerankRequest:
    """A valid rerank request in vendor-neutral form."""

    model: str | None
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool


@dataclass(frozen=True)
class RankedDocument:
    """One document as the stub ranks it."""

    index: int
    relevance_score: float
    text: str


class _InvalidRequest(Exception):
    """The request body breaks the vendor's rules; answered with the vendor's 4xx."""


@dataclass(frozen=True)
class _Settings:
    behaviour: str = "ok"
    slow_s: float = 2.0
    malformed_body: bytes = TRUNCATED_JSON
    error_message: str | None = None
    fail_fraction: Fraction = Fraction(0)
    fail_status: int = 500


def overlap_score(query: str, document: str) -> float:
    """Share of the query's distinct words that occur in ``document``, in [0, 1]."""
    query_words = set(_WORD.findall(query.lower()))
    if not query_words:
        return 0.0
    return len(query_words & set(_WORD.findall(document.lower()))) / len(query_words)


def rank_by_overlap(query: str, documents: list[str]) -> list[RankedDocument]:
    """Every document scored by ``overlap_score``, best first, ties in input order."""
    scored = [RankedDocument(i, overlap_score(query, d), d) for i, d in enumerate(documents)]
    return sorted(scored, key=lambda r: (-r.relevance_score, r.index))


def _word_count(text: str) -> int:
    return len(_WORD.findall(text))


_S = TypeVar("_S", bound="VendorStub")


class VendorStub(abc.ABC):
    """A vendor's rerank API on a loopback port. Subclasses give the paths and the JSON shapes."""

    #: POST paths the vendor answers; the first is ``url``.
    paths: ClassVar[tuple[str, ...]]
    #: Key of the message in the vendor's error body.
    error_field: ClassVar[str]
    #: Body key of the "how many results" parameter.
    top_field: ClassVar[str] = "top_n"
    #: Whether the vendor returns documents when the request does not say.
    return_documents_default: ClassVar[bool] = False
    #: Status the vendor answers to a request that breaks its rules.
    invalid_status: ClassVar[int] = 400

    def __init__(
        self,
        *,
        api_key: str | None = None,
        behaviour: str = "ok",
        slow_s: float = 2.0,
        malformed_body: bytes = TRUNCATED_JSON,
        fail_fraction: float = 0.0,
        fail_status: int = 500,
    ) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._settings = _Settings()
        self._requests: list[RecordedRequest] = []
        self._fail_calls = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_behaviour(behaviour, slow_s=slow_s, malformed_body=malformed_body)
        self.set_failures(fail_fraction, status=fail_status)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self: _S) -> _S:
        """Bind a free loopback port and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        self._closing.clear()
        server = _StubServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: wake slow handlers, close the listening socket, join the thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._closing.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the stub must be started)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, the root the vendor's paths hang from."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The full URL of the vendor's (first) rerank endpoint."""
        return self.base_url + self.paths[0]

    # -- control -----------------------------------------------------------------------------

    def set_behaviour(
        self,
        behaviour: str,
        *,
        slow_s: float | None = None,
        malformed_body: bytes | None = None,
        error_message: str | None = None,
    ) -> None:
        """Answer every later call as ``behaviour`` says (see the module docstring).

        ``slow_s`` and ``malformed_body`` replace the current values when given; an error status
        answers with ``error_message`` (a stock reason when None) in the vendor's error field.
        """
        if behaviour not in ("ok", "slow", "malformed") and not _is_status(behaviour):
            raise ValueError(f"unknown behaviour {behaviour!r}")
        with self._lock:
            changes: dict[str, Any] = {"behaviour": behaviour, "error_message": error_message}
            if slow_s is not None:
                changes["slow_s"] = slow_s
            if malformed_body is not None:
                changes["malformed_body"] = malformed_body
            self._settings = replace(self._settings, **changes)

    def set_failures(self, fraction: float, *, status: int = 500) -> None:
        """Fail ``fraction`` of the calls from now on with ``status``, deterministically.

        Call k (counted from 1 since this call) fails iff floor(k·f) > floor((k-1)·f): exactly
        floor(n·f) of the next n calls fail, evenly spread (f=0.5 fails every second call).
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        with self._lock:
            self._settings = replace(
                self._settings,
                fail_fraction=Fraction(fraction).limit_denominator(1_000_000),
                fail_status=status,
            )
            self._fail_calls = 0

    def reset(self) -> None:
        """Back to answering "ok" with no failures, and forget the recorded requests."""
        with self._lock:
            self._settings = _Settings()
            self._requests.clear()
            self._fail_calls = 0

    # -- what was received -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The latest request; fails the test when there was none."""
        with self._lock:
            if not self._requests:
                raise AssertionError(f"{type(self).__name__} received no request")
            return self._requests[-1]

    @property
    def calls(self) -> int:
        """How many requests arrived so far."""
        with self._lock:
            return len(self._requests)

    # -- vendor shapes -----------------------------------------------------------------------

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        """The vendor's error body for ``status``."""
        return {self.error_field: message or _REASONS.get(status, f"error {status}")}

    def requires_model(self, path: str) -> bool:
        """Whether ``path`` rejects a request without ``model``."""
        return True

    @abc.abstractmethod
    def success_body(
        self, path: str, request: RerankRequest, ranked: list[RankedDocument]
    ) -> dict[str, Any]:
        """The vendor's 200 body for ``ranked`` (already cut to ``top_n``)."""

    # -- request handling (called on the server's threads) ----------------------------------

    def _record(self, request: RecordedRequest) -> tuple[_Settings, bool]:
        with self._lock:
            self._requests.append(request)
            settings = self._settings
            self._fail_calls += 1
            k, f = self._fail_calls, settings.fail_fraction
            return settings, math.floor(k * f) > math.floor((k - 1) * f)

    def _answer(self, request: RecordedRequest) -> tuple[int, bytes] | None:
        """Status and body for ``request``; None: drop the connection unanswered."""
        settings, fail_now = self._record(request)
        if request.path not in self.paths:
            return self._error(404, f"no route for {request.path}")
        if self.api_key is not None and request.bearer != self.api_key:
            return self._error(401)
        if fail_now:
            return self._error(settings.fail_status)
        if _is_status(settings.behaviour):
            return self._error(int(settings.behaviour), settings.error_message)
        if settings.behaviour == "malformed":
            return 200, settings.malformed_body
        if settings.behaviour == "slow" and self._closing.wait(settings.slow_s):
            return None
        try:
            rerank = self._parse(request)
        except _InvalidRequest as exc:
            return self._error(self.invalid_status, str(exc))
        ranked = rank_by_overlap(rerank.query, rerank.documents)[: rerank.top_n]
        return 200, json.dumps(self.success_body(request.path, rerank, ranked)).encode()

    def _error(self, status: int, message: str | None = None) -> tuple[int, bytes]:
        return status, json.dumps(self.error_body(status, message)).encode()

    def _parse(self, request: RecordedRequest) -> RerankRequest:
        body = request.json
        if not isinstance(body, dict):
            raise _InvalidRequest("the body must be a JSON object")
        model = body.get("model")
        if model is None and self.requires_model(request.path):
            raise _InvalidRequest("model is required")
        if model is not None and not isinstance(model, str):
            raise _InvalidRequest("model must be a string")
        query = body.get("query")
        if not isinstance(query, str) or not query:
            raise _InvalidRequest("query must be a non-empty string")
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            raise _InvalidRequest("documents must be a non-empty list")
        texts = [_document_text(d) for d in documents]
        top_n = body.get(self.top_field)
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)):
            raise _InvalidRequest(f"{self.top_field} must be an integer")
        if top_n is not None and top_n < 1:
            raise _InvalidRequest(f"{self.top_field} must be at least 1")
        return_documents = body.get("return_documents")
        if return_documents is None:
            return_documents = self.return_documents_default
        return RerankRequest(model, query, texts, top_n, bool(return_documents))


def _document_text(document: object) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        return document["text"]
    raise _InvalidRequest("each document must be a string or an object with text")


def _is_status(behaviour: str) -> bool:
    return behaviour.isdigit() and 100 <= int(behaviour) <= 599


def _usage_tokens(request: RerankRequest) -> int:
    query_words = _word_count(request.query)
    return sum(query_words + _word_count(d) for d in request.documents)


class CohereStub(VendorStub):
    """Cohere's ``POST /v2/rerank`` (and the older ``/v1/rerank``); errors as ``{"message"}``."""

    paths = ("/v2/rerank", "/v1/rerank")
    error_field = "message"

    def requires_model(self, path: str) -> bool:
        return path == "/v2/rerank"

    def success_body(
        self, path: str, request: RerankRequest, ranked: list[RankedDocument]
    ) -> dict[str, Any]:
        v1 = path == "/v1/rerank"
        results: list[dict[str, Any]] = []
        for r in ranked:
            item: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
            if v1 and request.return_documents:
                item["document"] = {"text": r.text}
            results.append(item)
        return {
            "id": str(uuid.uuid4()),
            "results": results,
            "meta": {
                "api_version": {"version": "1" if v1 else "2"},
                "billed_units": {"search_units": 1},
            },
        }


class JinaStub(VendorStub):
    """Jina's ``POST /v1/rerank``; errors as ``{"detail"}``, invalid requests as 422."""

    paths = ("/v1/rerank",)
    error_field = "detail"
    return_documents_default = True
    invalid_status = 422

    def success_body(
        self, path: str, request: RerankRequest, ranked: list[RankedDocument]
    ) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for r in ranked:
            item: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
            if request.return_documents:
                item["document"] = {"text": r.text}
            results.append(item)
        return {
            "model": request.model,
            "usage": {"total_tokens": _usage_tokens(request)},
            "results": results,
        }


class VoyageStub(VendorStub):
    """Voyage's ``POST /v1/rerank`` (``top_k``; results under ``data``); errors as ``{"detail"}``."""

    paths = ("/v1/rerank",)
    error_field = "detail"
    top_field = "top_k"

    def success_body(
        self, path: str, request: RerankRequest, ranked: list[RankedDocument]
    ) -> dict[str, Any]:
        data: list[dict[str, Any]] = []
        for r in ranked:
            item: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
            if request.return_documents:
                item["document"] = r.text
            data.append(item)
        return {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"total_tokens": _usage_tokens(request)},
        }


def closed_port_url() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def stub_fixture(stub_class: type[_S], *, scope: str = "function", **options: Any) -> Any:
    """A pytest fixture yielding a started ``stub_class(**options)``, closed when its scope ends.

    The fixture takes the name it is assigned to: ``cohere = stub_fixture(CohereStub, api_key=K)``.
    """

    def _fixture() -> Iterator[_S]:
        with stub_class(**options) as stub:
            yield stub

    return pytest.fixture(scope=scope)(_fixture)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    # Room for bursts of concurrent clients (load tests through Ray Serve).
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes its socket mid-answer: expected, not noise.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(stub: VendorStub) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so closing the stub leaves no live keep-alive
        # connection that could still answer after close().
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            recorded = RecordedRequest(
                method="POST",
                path=self.path.split("?", 1)[0],
                headers={k.lower(): v for k, v in self.headers.items()},
                raw_body=raw,
                json=parsed,
            )
            answer = stub._answer(recorded)
            if answer is None:
                self.close_connection = True
                return
            status, body = answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: tests assert on recorded requests, not on an access log.
            return

    return Handler
