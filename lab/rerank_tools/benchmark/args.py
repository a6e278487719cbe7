"""The command line of ``rerank-bench`` (see ``rerank_tools.benchmark.cli``)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import cast

from rerank_tools.benchmark.infinity_server import CPU_DTYPES, DEFAULT_VENV
from rerank_tools.benchmark.loadgen import CLIENT_KINDS
from rerank_tools.benchmark.mix import RESENDS, TRAFFIC_CLASSES, MixGroup, Resend
from rerank_tools.benchmark.runtimes import runtime_labels


def ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return values


def cells(text: str) -> list[tuple[int, int]]:
    """``--cells``: comma-separated ``DOCSxCONCURRENCY`` pairs, e.g. ``10x1,10x32,100x8``."""
    cells = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        docs, sep, concurrency = item.partition("x")
        try:
            cell = (int(docs), int(concurrency))
        except ValueError:
            cell = (0, 0)
        if not sep or min(cell) < 1:
            raise argparse.ArgumentTypeError(f"expected DOCSxCONCURRENCY like 10x32, not {item!r}")
        cells.append(cell)
    if not cells:
        raise argparse.ArgumentTypeError("no cells given")
    return cells


def dtypes(text: str) -> list[str]:
    dtypes = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in dtypes if v not in CPU_DTYPES]
    if not dtypes or unknown:
        raise argparse.ArgumentTypeError(f"expected dtypes among {', '.join(CPU_DTYPES)}, not {text!r}")
    return dtypes


MIX_FIELDS = ("docs", "clients", "key_env", "class", "resend", "start")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _positive(name: str, group: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"group {group!r}: {name} must be a positive integer, not {value!r}")
    return number


def mix_group(text: str) -> MixGroup:
    """``--mix``: ``NAME:docs=N,clients=N[,key_env=VAR][,class=interactive|bulk]
    [,resend=retry-after|now][,start=SECONDS]``, e.g. ``bulk:docs=100,clients=16,key_env=KEY_B``."""
    name, sep, spec = text.partition(":")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"expected NAME:docs=N,clients=N[,key_env=VAR,class=...,resend=...,start=S], not {text!r}"
        )
    fields: dict[str, str] = {}
    for item in (v.strip() for v in spec.split(",") if v.strip()):
        key, eq, value = (part.strip() for part in item.partition("="))
        if key not in MIX_FIELDS:
            raise argparse.ArgumentTypeError(
                f"group {name!r}: unknown field {key!r} (fields: {', '.join(MIX_FIELDS)})"
            )
        if not eq or not value:
            raise argparse.ArgumentTypeError(f"group {name!r}: {key} needs a value ({key}=...)")
        if key in fields:
            raise argparse.ArgumentTypeError(f"group {name!r}: {key} given twice")
        fields[key] = value
    for required in ("docs", "clients"):
        if required not in fields:
            raise argparse.ArgumentTypeError(f"group {name!r}: {required} is required")
    key_env = fields.get("key_env")
    if key_env is not None and not _ENV_NAME.fullmatch(key_env):
        raise argparse.ArgumentTypeError(
            f"group {name!r}: key_env must name an environment variable, not {key_env!r}"
        )
    traffic_class = fields.get("class")
    if traffic_class is not None and traffic_class not in TRAFFIC_CLASSES:
        raise argparse.ArgumentTypeError(
            f"group {name!r}: class must be one of {', '.join(TRAFFIC_CLASSES)}, not {traffic_class!r}"
        )
    resend = fields.get("resend", "retry-after")
    if resend not in RESENDS:
        raise argparse.ArgumentTypeError(
            f"group {name!r}: resend must be one of {', '.join(RESENDS)}, not {resend!r}"
        )
    try:
        start_s = float(fields.get("start", "0"))
    except ValueError:
        start_s = -1.0
    if not 0 <= start_s < float("inf"):
        raise argparse.ArgumentTypeError(
            f"group {name!r}: start must be seconds >= 0, not {fields['start']!r}"
        )
    return MixGroup(
        name=name,
        docs=_positive("docs", name, fields["docs"]),
        clients=_positive("clients", name, fields["clients"]),
        key_env=key_env,
        traffic_class=traffic_class,
        resend=cast("Resend", resend),
        start_s=start_s,
    )


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """``rerank-bench``'s parser; ``description`` is the CLI module's first paragraph."""
    parser = argparse.ArgumentParser(
        prog="rerank-bench",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    target = parser.add_argument_group("the served service")
    target.add_argument("--url", help="base URL of the running service (127.0.0.1/localhost only)")
    target.add_argument("--model", help="route or backend name to ask for")
    target.add_argument("--api-key-env", help="environment variable holding the service API key")
    target.add_argument(
        "--url-client",
        choices=CLIENT_KINDS,
        default="service",
        help="request shape --url speaks: the service's /rerank or Infinity's",
    )
    target.add_argument("--label", default="served", help="target name of --url in the records")

    sweep = parser.add_argument_group("the sweep")
    sweep.add_argument("--concurrency", type=ints, default=[1, 4, 16, 32, 64])
    sweep.add_argument("--docs", type=ints, default=[10, 100], help="documents per request")
    sweep.add_argument(
        "--cells",
        type=cells,
        help="DOCSxCONCURRENCY cells instead of the --docs x --concurrency grid, e.g. 10x1,10x32,100x8",
    )
    sweep.add_argument("--duration", type=float, default=10.0, help="seconds per cell")
    sweep.add_argument("--max-requests", type=int, default=5000, help="requests per cell")
    sweep.add_argument("--warmup", type=int, default=2, help="unmeasured requests per cell")
    sweep.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    sweep.add_argument("--top-n", type=int, default=None, help="top_n sent (default: all)")
    sweep.add_argument("--max-total-s", type=float, default=1800.0, help="cap on the whole run")
    sweep.add_argument("--samples", type=int, default=256, help="distinct requests per docs size")
    sweep.add_argument("--seed", type=int, default=0)

    data = parser.add_argument_group("traffic")
    data.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("RERANK_SHARED_DATA", "../shared/data")),
    )
    data.add_argument("--candidates", type=Path, help="default: <data-dir>/trec-dl20/candidates.jsonl")

    model = parser.add_argument_group("in-process ceiling and naive baseline")
    model.add_argument("--model-dir", type=Path, default=Path("models/bench-minilm-l6-cross-encoder"))
    model.add_argument("--ceiling", action="store_true", help="measure the in-process ceiling")
    model.add_argument("--ceiling-batch-sizes", type=ints, default=[8, 16, 32, 64])
    model.add_argument("--ceiling-pairs", type=int, default=1024, help="pairs per batch size")
    model.add_argument("--ceiling-max-s", type=float, default=30.0, help="seconds per batch size")
    model.add_argument("--naive", action="store_true", help="sweep the naive FastAPI baseline too")
    model.add_argument("--naive-startup-s", type=float, default=180.0)
    model.add_argument(
        "--check-scores",
        type=int,
        default=0,
        metavar="N",
        help="compare each target's scores on N requests with in-process predict (0: off)",
    )
    peer = parser.add_argument_group("the peer: Infinity (benchmarks/setup_infinity.sh installs it)")
    peer.add_argument(
        "--infinity",
        type=dtypes,
        help="sweep Infinity on --model-dir, once per weight dtype listed (e.g. bfloat16,float32)",
    )
    peer.add_argument("--infinity-venv", type=Path, default=DEFAULT_VENV)
    peer.add_argument("--infinity-batch-size", type=int, default=32)
    peer.add_argument("--infinity-startup-s", type=float, default=300.0)
    model.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (ceiling, naive)"
    )
    runtimes = parser.add_argument_group("runtime sweep (in-process, same model and requests)")
    runtimes.add_argument(
        "--runtimes",
        type=runtime_labels,
        help="e.g. onnx,onnx-int8,openvino,openvino-int8,openvino-int8-static "
        "(torch is always measured as the baseline)",
    )
    runtimes.add_argument("--runtime-docs", type=int, default=100, help="documents per request")
    runtimes.add_argument("--runtime-max-s", type=float, default=60.0, help="seconds for the sweep")
    runtimes.add_argument("--export-cache-dir", type=Path, help="where exports go (default: as configured)")
    overload = parser.add_argument_group("goodput under overload (against --url, instead of the sweep)")
    overload.add_argument("--overload", action="store_true",
                          help="the unloaded rate, then --overload-clients that resend at once after "
                          "a refusal: goodput within --deadline as a share of the unloaded rate")  # fmt: skip
    overload.add_argument("--overload-clients", type=int, default=64)
    overload.add_argument("--overload-base", type=int, default=8, help="clients of the unloaded cell")
    overload.add_argument("--deadline", type=float, default=60.0,
                          help="seconds past which an answer no longer counts (the deadline)")  # fmt: skip
    mix = parser.add_argument_group("mixed traffic (against --url, instead of the sweep)")
    mix.add_argument("--mix", type=mix_group, action="append", metavar="GROUP",
                     help="a client group, NAME:docs=N,clients=N[,key_env=VAR][,class=interactive|bulk]"
                     "[,resend=retry-after|now][,start=SECONDS]; repeat for each group; all run at once "
                     "for --duration")  # fmt: skip
    mix.add_argument("--mix-alone", action="store_true",
                     help="first run each group alone, and report mixed/alone per group")  # fmt: skip
    parser.add_argument("--output-dir", type=Path, help="default: ./runs/bench-<timestamp>/")
    return parser
