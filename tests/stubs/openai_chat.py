"""A local stand-in for the OpenAI chat completions API, for tests.

``OpenAIChatStub`` is an HTTP server on 127.0.0.1 (a free port) that speaks the chat completions
wire format (``POST /v1/chat/completions``), so the real ``openai`` SDK talks to it unchanged. It
records every request (path, Authorization header, JSON body); what it answers is programmable:

- a *responder*, a callable that gets the request body and returns the assistant message's content
  (a correct ranking computed from the prompt, garbage, fenced JSON ...);
- a *failure* mode: ``"429"``, ``"500"``, ``"401"``, ``"403"``, ``"400"`` answer that status with an
  OpenAI-shaped error body; ``"slow"`` sleeps ``slow_s`` before answering normally (to trip a client
  timeout); ``"bad_body"`` answers 200 with a body that is not JSON. A failure may be limited to the
  next ``times`` requests.

Thread-safe (one thread per connection), usable as a context manager, and shut down cleanly:
stopping wakes any request still sleeping in ``"slow"``. A responder that raises makes the stub
answer 500, and the error is raised again when the ``with`` block exits, so a broken test helper
cannot pass silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

#: Gets the request's JSON body, returns the assistant message's content.
Responder = Callable[[dict[str, Any]], str]

CHAT_PATH = "/v1/chat/completions"

#: Status and OpenAI-shaped error of each failure mode that answers an error.
_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "400": (400, "invalid_request_error", "invalid_value"),
    "401": (401, "invalid_request_error", "invalid_api_key"),
    "403": (403, "insufficient_permissions", None),
    "429": (429, "requests", "rate_limit_exceeded"),
    "500": (500, "server_error", None),
}
FAILURE_MODES = (*_ERRORS, "slow", "bad_body")
#: What ``"bad_body"`` sends with ``Content-Type: application/json``.
BAD_BODY = b"<html>upstream proxy error</html>"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received."""

    path: str
    authorization: str | None
    body: dict[str, Any]

    def messages_text(self) -> str:
        """Every message's content joined, to search the prompt."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


def echo_responder(body: dict[str, Any]) -> str:
    """The default answer: an empty JSON object (a valid chat completion that says nothing)."""
    return "{}"


class OpenAIChatStub:
    """A programmable OpenAI-compatible chat completions server on 127.0.0.1 (port 0).

    ``base_url`` is what an ``AsyncOpenAI(base_url=...)`` client needs. ``delay_s`` holds every
    answer that long, so concurrent requests overlap and ``max_in_flight`` measures a client's
    concurrency.
    """

    def __init__(
        self,
        responder: Responder = echo_responder,
        *,
        delay_s: float = 0.0,
        slow_s: float = 5.0,
    ) -> None:
        self.delay_s = delay_s
        self.slow_s = slow_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._responder = responder
        self._failure: str | None = None
        self._failures_left: int | None = None
        self._requests: list[RecordedRequest] = []
        self._responder_errors: list[BaseException] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- programming ---------------------------------------------------------------------------

    def set_responder(self, responder: Responder) -> None:
        """Answer later requests with ``responder``."""
        with self._lock:
            self._responder = responder

    def set_failure(self, mode: str | None, times: int | None = None) -> None:
        """Fail the next ``times`` requests (None: all) in ``mode``; ``None`` answers normally."""
        if mode is not None and mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; known: {', '.join(FAILURE_MODES)}")
        with self._lock:
            self._failure = mode
            self._failures_left = times

    # -- what happened -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests the stub was handling at once."""
        with self._lock:
            return self._max_in_flight

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this stub (``http://127.0.0.1:<port>/v1``)."""
        if self._server is None:
            raise RuntimeError("the stub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> OpenAIChatStub:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the stub is already running")
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        # Handler threads must not keep the interpreter alive; stop() wakes any that sleep.
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; requests sleeping in ``"slow"`` return at once."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def raise_responder_errors(self) -> None:
        """Raise the first error a responder raised, if any."""
        with self._lock:
            errors = list(self._responder_errors)
        if errors:
            raise AssertionError("the stub's responder raised") from errors[0]

    def __enter__(self) -> OpenAIChatStub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None:
            self.raise_responder_errors()

    # -- serving (called from handler threads) -------------------------------------------------

    def _record(self, request: RecordedRequest) -> tuple[str | None, Responder]:
        """Record a request; return the failure mode that applies to it and the responder."""
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            failure = self._failure
            if failure is not None and self._failures_left is not None:
                self._failures_left -= 1
                if self._failures_left <= 0:
                    self._failure = None
                    self._failures_left = None
            return failure, self._responder

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _answer(self, request: RecordedRequest) -> tuple[int, bytes]:
        """Status and body for one recorded chat completions request."""
        failure, responder = self._record(request)
        try:
            if self.delay_s:
                self._stopping.wait(self.delay_s)
            if failure == "slow":
                self._stopping.wait(self.slow_s)
            elif failure == "bad_body":
                return 200, BAD_BODY
            elif failure is not None:
                return _json(*_error(failure, request.authorization))
            try:
                content = responder(request.body)
            except Exception as exc:  # a broken test helper: answer 500, re-raised on exit
                log.exception("stub responder raised")
                with self._lock:
                    self._responder_errors.append(exc)
                return _json(500, _error_body("stub responder raised", "server_error", None))
            return _json(200, _completion(request.body, content))
        finally:
            self._done()


def _json(status: int, payload: dict[str, Any]) -> tuple[int, bytes]:
    return status, json.dumps(payload).encode()


def _completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    prompt_tokens, completion_tokens = len(prompt.split()), len(content.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "stub-model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _error(mode: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
    status, type_, code = _ERRORS[mode]
    if mode == "401":
        # The real API quotes (part of) the key it rejected; quoting all of it here makes any leak
        # of a vendor message into this project's errors or logs visible to the tests.
        key = (authorization or "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {key}."
    else:
        message = f"stub failure {mode}"
    return status, _error_body(message, type_, code)


def _handler_class(stub: OpenAIChatStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so no idle keep-alive thread outlives stop().
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != CHAT_PATH:
                message = f"no route {self.path}"
                self._send(*_json(404, _error_body(message, "invalid_request_error", None)))
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                message = "body is not JSON"
                self._send(*_json(400, _error_body(message, "invalid_request_error", None)))
                return
            request = RecordedRequest(self.path, self.headers.get("Authorization"), body)
            self._send(*stub._answer(request))

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # A client that gave up (a timeout test) has closed the socket: nothing to tell it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("stub: " + format, *args)

    return Handler
