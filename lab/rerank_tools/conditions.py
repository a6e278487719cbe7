"""The conditions a measurement was taken under, recorded with its results: the CPU (model, cores and
the instruction sets that decide which compute types are fast), memory, GPU, the versions that
decide speed, the date and the commit. ``rerank-bench`` puts them in its ``config`` record, the
sitting's ``sitting.json`` carries them, and docs/benchmarks.md describes its machine from them
(``describe``) instead of from a sentence typed into the page."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rerank_core.backends.exports import cpu_flags

#: The instruction sets that decide which compute types are fast on a CPU (``lscpu``'s names).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
#: The packages whose versions decide a figure.
PACKAGES = (
    "torch", "ray", "transformers", "sentence-transformers", "tokenizers", "onnxruntime",
    "openvino", "infinity-emb", "rerank-service",
)
REPO = Path(__file__).resolve().parents[2]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gpus() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def conditions() -> dict[str, Any]:
    """This machine and software, now."""
    flags = cpu_flags() or frozenset()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "mem_gib": _mem_gib(),
        "gpus": _gpus(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": _commit(),
    }


def describe(c: dict[str, Any]) -> str:
    """One sentence for a page: cores, CPU and what it lacks of bf16/AMX, memory, GPU, versions."""
    flags = set(c.get("cpu_flags", []))
    if "amx_bf16" in flags:
        isa = "AMX"
    elif "avx512_bf16" in flags:
        isa = "AVX512-BF16, no AMX"
    elif "avx512f" in flags:
        isa = "AVX512 without bf16, no AMX"
    else:
        isa = "AVX2 only: no AVX512, no bf16, no AMX"
    versions = c.get("versions", {})
    software = ", ".join(
        f"{label} {versions[name]}"
        for name, label in (("torch", "torch"), ("ray", "Ray"), ("openvino", "OpenVINO"))
        if name in versions
    )
    gpus = ", ".join(c.get("gpus") or []) or "no GPU"
    mem = f", {c['mem_gib']:g} GiB" if c.get("mem_gib") else ""
    return (
        f"{c['cores']} CPU cores ({c['cpu']}; {isa}){mem}, {gpus}; Python {c['python']}"
        + (f", {software}" if software else "")
        + f"; {c['date'][:10]}"
    )


if __name__ == "__main__":
    import json

    print(json.dumps(conditions(), indent=1))
