"""The naive baseline: a plain FastAPI + uvicorn process calling ``CrossEncoder.predict`` once per
request on that request's pairs, speaking the service's ``POST /rerank`` contract.

No batching across requests, no queueing policy: FastAPI runs each (sync) handler in its thread
pool, as a first attempt at serving a model usually does. ``NaiveServer`` starts it as a
subprocess on a free loopback port (the socket is bound here and inherited, so no other process can
take the port in between) and stops it by its pid.

Run directly: ``python -m rerank_tools.benchmark.naive_server --model-dir DIR --port 8123``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rerank_core.config import LimitsConfig
from rerank_core.errors import InvalidRequest
from rerank_core.types import sigmoid
from rerank_tools.benchmark.local_server import HOST, LocalServer, offline_env
from rerank_wire import (
    ErrorResponse,
    RerankRequest,
    RerankResponse,
    ResultOut,
    check_limits,
    from_service_request,
)


def error_answer(exc: InvalidRequest) -> JSONResponse:
    """A 422 in the service's error shape."""
    body = ErrorResponse.model_validate({"error": exc.to_dict()})
    return JSONResponse(body.model_dump(exclude_none=True), status_code=422)


def build_app(model_dir: str | Path, threads: int) -> FastAPI:
    """The FastAPI app: the cross-encoder in ``model_dir`` on ``threads`` torch threads."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(threads)
    model = CrossEncoder(str(model_dir), device="cpu", local_files_only=True)
    model_name = Path(model_dir).name

    app = FastAPI(title="naive cross-encoder baseline")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        return error_answer(InvalidRequest(str(first.get("msg")), field=".".join(loc)))

    @app.exception_handler(InvalidRequest)
    async def _over_limit(_: Request, exc: InvalidRequest) -> JSONResponse:
        return error_answer(exc)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backends": {model_name: "ok"}}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"data": [{"id": model_name, "type": "cross_encoder"}]}

    @app.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True)
    def rerank(request: RerankRequest) -> RerankResponse:
        started = time.perf_counter()
        # The service's own limits (its defaults), so both answer the same requests.
        query = from_service_request(request)
        check_limits(query, LimitsConfig())
        docs = query.documents
        raw: list[float] = []
        if docs:
            # Logits, so the answer carries both the raw score and its sigmoid, as the service does.
            logits = model.predict(
                [(request.query, d.text) for d in docs],
                activation_fn=torch.nn.Identity(),
                show_progress_bar=False,
            )
            raw = [float(x) for x in logits]
        order = sorted(range(len(raw)), key=lambda i: (-raw[i], i))
        top_n = request.top_n if request.top_n is not None else request.top_k
        if top_n is not None:
            order = order[:top_n]
        keep = request.return_documents
        results = [
            ResultOut(
                index=i,
                score=sigmoid(raw[i]),
                raw_score=raw[i],
                document=docs[i].text if keep else None,
                id=docs[i].id,
                metadata=docs[i].metadata,
            )
            for i in order
        ]
        return RerankResponse(
            id=uuid.uuid4().hex,
            model=request.model or model_name,
            backend=model_name,
            fallback=False,
            degraded=False,
            skipped=[],
            latency=time.perf_counter() - started,
            results=results,
        )

    return app


class NaiveServer(LocalServer):
    """The naive baseline as a subprocess on a free loopback port (see ``LocalServer``). The socket
    is bound here and inherited, so no other process can take the port in between."""

    name = "naive"

    def __init__(
        self,
        model_dir: str | Path,
        threads: int,
        startup_timeout_s: float = 120.0,
        log_path: str | Path | None = None,
    ) -> None:
        super().__init__(startup_timeout_s, log_path)
        self.model_dir = Path(model_dir)
        self.threads = threads

    def launch(self, stdout: int | IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rerank_tools.benchmark.naive_server",
                    "--model-dir",
                    str(self.model_dir),
                    "--threads",
                    str(self.threads),
                    "--fd",
                    str(sock.fileno()),
                ],
                pass_fds=[sock.fileno()],
                env=offline_env(),
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
        finally:
            # The child holds its own copy of the socket.
            sock.close()
        return proc, port


def main(argv: list[str] | None = None) -> None:
    """Serve the naive baseline (on an inherited socket ``--fd`` or on ``--host``/``--port``)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="CrossEncoder-loadable local directory")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--fd", type=int, default=None, help="listening socket to serve on")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args(argv)
    app = build_app(args.model_dir, args.threads)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    if args.fd is not None:
        server.run(sockets=[socket.socket(fileno=args.fd)])
    else:
        server.run()


if __name__ == "__main__":
    main()
