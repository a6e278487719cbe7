"""A stand-in of the reranking service for tests: real HTTP on loopback, in a thread, no model.

It speaks the ``POST /rerank`` contract, scoring a document by the share of the query's words it
contains, and answers in the error format on cue: a query ``error:<status>:<type>`` gets that status
and error type, ``slow`` waits two seconds, ``malformed`` gets a 200 without results, ``notjson`` a
502 plain-text page. With ``api_key`` set, requests without ``Authorization: Bearer <api_key>`` get
401 ``unauthorized``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from rerank_wire import DocumentIn, ErrorResponse, RerankRequest, RerankResponse, ResultOut


def overlap_score(query: str, text: str) -> float:
    """Share of the query's distinct words that occur in ``text`` (0 to 1)."""
    words = set(query.lower().split())
    return len(words & set(text.lower().split())) / len(words) if words else 0.0


def _error(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    body = ErrorResponse.model_validate({"error": {"type": type_, "message": message, **extra}})
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def build_stub_app(api_key: str | None = None, healthy: bool = True) -> FastAPI:
    """The stub service (see the module docstring); ``healthy`` False: ``/health`` answers 503
    with its report, as the service does when no backend is ready."""
    app = FastAPI()

    @app.get("/health")
    def health() -> JSONResponse:
        state = "ready" if healthy else "unavailable"
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", "backends": {"overlap": {"state": state}}},
            status_code=200 if healthy else 503,
        )

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"data": [{"id": "overlap"}]}

    @app.post("/rerank")
    async def rerank(request: Request) -> Response:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "unauthorized", "missing or invalid API key")
        body = RerankRequest.model_validate(await request.json())
        query = body.query
        if query.startswith("error:"):
            _, status, type_ = query.split(":")
            extra = {"field": "model"} if type_ == "unknown_model" else {}
            if type_ == "all_backends_failed":
                extra = {"skipped": [{"backend": "a", "reason": "backend_timeout"}]}
            return _error(int(status), type_, f"stub {type_}", **extra)
        if query == "slow":
            await asyncio.sleep(2.0)
        if query == "malformed":
            return JSONResponse({"unexpected": True})
        if query == "notjson":
            return PlainTextResponse("Bad Gateway", status_code=502)
        docs = [DocumentIn(text=d) if isinstance(d, str) else d for d in body.documents]
        scores = [overlap_score(query, d.text) for d in docs]
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))[: body.top_n]
        keep = body.return_documents
        answer = RerankResponse(
            id="stub",
            model=body.model or "overlap",
            backend="overlap",
            fallback=False,
            degraded=False,
            skipped=[],
            latency=0.0,
            results=[
                ResultOut(
                    index=i,
                    score=scores[i],
                    document=docs[i].text if keep else None,
                    id=docs[i].id,
                    metadata=docs[i].metadata,
                )
                for i in order
            ],
        )
        return JSONResponse(answer.model_dump(exclude_none=True))

    return app


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL and
    shuts the server down on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stub service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
