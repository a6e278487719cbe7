"""``rerank``: rerank documents from the command line with any configured backend, no Ray.

    rerank "how do plants make food" "Photosynthesis ..." "The stock market ..."
    rerank --config serve_config.yaml --model hosted "query" doc1 doc2 ...

Without ``--config`` it uses the packaged all-MiniLM-L6-v2 bi-encoder, which works offline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rerank_core.backends import build_enabled_backend
from rerank_core.config import (
    BiEncoderConfig,
    ConfigError,
    ServiceConfig,
    load_app_args,
    load_config,
    read_yaml,
)
from rerank_core.errors import RerankError
from rerank_core.fallback import CircuitBreaker, build_chain
from rerank_core.types import RankedResult


def service_from_file(path: Path) -> ServiceConfig:
    """A service configuration from a plain config file or a Serve config (its first
    application); ``ConfigError`` names what is wrong (the file, its YAML, a field)."""
    data = read_yaml(path)
    if isinstance(data, dict) and "applications" in data:
        apps = data["applications"]
        if not (isinstance(apps, list) and apps and isinstance(apps[0], dict)):
            raise ConfigError(f"{path}: applications must be a list of applications")
        return load_app_args(apps[0].get("args") or {})
    return load_config(data)


async def rerank_with(
    service: ServiceConfig, model: str | None, query: str, documents: list[str], top_n: int | None
) -> RankedResult:
    """Rerank through the chain ``model`` selects, building only the backends it names; an API
    backend without its key is skipped, as the service skips it."""
    _, route = service.resolve_route(model)
    backends = {name: build_enabled_backend(name, service.backends[name]) for name in route.backends}
    breakers = {name: CircuitBreaker(service.breaker) for name in route.backends}
    try:
        return await build_chain(route, backends, breakers).rerank(query, documents, top_n)
    finally:
        for backend in backends.values():
            await backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rerank", description=__doc__.split("\n")[0])
    parser.add_argument("query")
    parser.add_argument("documents", nargs="+")
    parser.add_argument("--config", type=Path, help="service config or serve_config.yaml")
    parser.add_argument("--model", help="route or backend name (default: the default route)")
    parser.add_argument("--top-n", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        service = (
            service_from_file(args.config)
            if args.config
            else load_config({"backends": {"minilm": BiEncoderConfig().model_dump()}})
        )
        result = asyncio.run(rerank_with(service, args.model, args.query, args.documents, args.top_n))
    except RerankError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "backend": result.backend,
                    "fallback": result.fallback,
                    "degraded": result.degraded,
                    "skipped": [{"backend": s.backend, "reason": s.reason} for s in result.skipped],
                    "results": [
                        {"index": s.index, "score": s.score, "document": args.documents[s.index]}
                        for s in result.results
                    ],
                }
            )
        )
        return 0
    print(f"backend: {result.backend}" + (" (degraded: original order)" if result.degraded else ""))
    for rank, s in enumerate(result.results, 1):
        print(f"{rank:>3}. {s.score:.4f}  [{s.index}] {args.documents[s.index]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
