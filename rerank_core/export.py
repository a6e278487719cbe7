"""``rerank-export``: export (and quantize) the local models of a configuration ahead of time.

    rerank-export --config serve_config.yaml
    rerank-export --config serve_config.yaml --backend local-onnx

Every local backend whose ``runtime`` is onnx or openvino is loaded once, which builds its export
when the cache holds none for the current weights, runtime, quantization and library versions
(``rerank_core.backends.exports``), and one status line per backend says whether it was built or
already up to date, and where it lies. Replicas started afterwards reuse the export. Exit status 1
when any backend cannot be exported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rerank_core.backends import LocalModelBackend, build_backend
from rerank_core.cli import service_from_file
from rerank_core.config import LOCAL_TYPES, BiEncoderConfig, CrossEncoderConfig
from rerank_core.errors import RerankError


def exportable(
    backends: dict[str, object], names: list[str] | None
) -> dict[str, CrossEncoderConfig | BiEncoderConfig]:
    """The local backends with a runtime other than torch, restricted to ``names`` when given
    (a named backend that is not such a backend raises ``ValueError`` saying why)."""
    chosen = {
        name: config
        for name, config in backends.items()
        if isinstance(config, CrossEncoderConfig | BiEncoderConfig) and config.runtime != "torch"
    }
    for name in names or []:
        if name not in backends:
            raise ValueError(f"no backend named {name!r}; configured: {', '.join(backends)}")
        if name not in chosen:
            kind = getattr(backends[name], "type", "?")
            reason = "runtime is torch" if kind in LOCAL_TYPES else f"a {kind} backend"
            raise ValueError(f"backend {name!r} has nothing to export ({reason})")
    return {n: c for n, c in chosen.items() if not names or n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rerank-export", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="service config or serve_config.yaml")
    parser.add_argument(
        "--backend", action="append", help="export only this backend (repeatable; default: all)"
    )
    args = parser.parse_args(argv)
    try:
        service = service_from_file(args.config)
        targets = exportable(dict(service.backends), args.backend)
    except (RerankError, ValueError) as exc:
        print(f"rerank-export: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    if not targets:
        print("rerank-export: no local backend has runtime onnx or openvino; nothing to export")
        return 0
    failed = 0
    for i, (name, config) in enumerate(targets.items(), 1):
        label = f"[{i}/{len(targets)}] {name}: {config.runtime}/{config.quantization}"
        print(f"{label} loading {config.model} ...", flush=True)
        started = time.perf_counter()
        try:
            backend = build_backend(name, config)
        except RerankError as exc:
            print(f"{label} FAILED: {exc.message}", flush=True)
            failed += 1
            continue
        assert isinstance(backend, LocalModelBackend) and backend.exported is not None
        info = backend.exported.info
        state = f"built in {info.seconds:.1f} s" if info.built else "up to date"
        print(
            f"{label} {state} ({time.perf_counter() - started:.1f} s in all): {info.directory} "
            f"[fingerprint {info.fingerprint[:12]}]",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
