"""The layers keep to their rules: the core, the wire contract and the client import no serving,
web or tool library; a bare ``pip install .`` reranks in-process; nothing imports from tests/; no
code reads Ray's private API."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.stubs.vendors import JinaStub

REPO = Path(__file__).resolve().parents[2]
#: What the core, the wire contract and the client must never pull in.
FORBIDDEN = ["ray", "fastapi", "starlette", "uvicorn", "matplotlib", "ir_measures", "tqdm"]
#: Packages that must stay importable with the base dependencies alone.
LEAN = ["rerank_core", "rerank_wire", "rerank_client"]


def lean_modules() -> list[str]:
    names = list(LEAN)
    for package in LEAN:
        path = REPO / package
        names += [m.name for m in pkgutil.walk_packages([str(path)], prefix=f"{package}.")]
    # The LangChain compressor is an integration, imported only by those who use it.
    return [n for n in names if n != "rerank_client.langchain"]


#: The vendor SDKs the API backends wrap (optional extras); what they import is theirs, not ours
#: (voyageai loads tqdm, for one).
VENDOR_SDKS = ["cohere", "voyageai", "openai"]


def test_lean_packages_import_no_serving_web_or_tool_library() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {VENDOR_SDKS!r}: importlib.import_module(m)\n"
        "theirs = set(sys.modules)\n"
        f"for m in {lean_modules()!r}: importlib.import_module(m)\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in set(sys.modules) - theirs]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


RERANK_IN_A_BARE_INSTALL = """
import asyncio, json, sys
from rerank_core import build_backend, JinaConfig
from rerank_client import rerank_payload

backend = build_backend("jina", JinaConfig(base_url=sys.argv[1], api_key_env="TEST_JINA_KEY"))
ranked = asyncio.run(backend.rerank("a cat", ["a dog barks", "a cat purrs", "the sky"], top_n=2))
rerank_payload("q", ["d"])
print(json.dumps({"order": [s.index for s in ranked],
                  "loaded": [m for m in FORBIDDEN if m in sys.modules]}))
"""


@pytest.mark.timeout(600)
def test_a_bare_install_reranks_in_process(tmp_path: Path) -> None:
    """``pip install .`` with no extras into a fresh venv: an API backend reranks in-process (the
    vendor a stub on loopback) and the ``rerank`` CLI runs, with no serving or tool library."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    code = f"FORBIDDEN = {FORBIDDEN!r}\n" + RERANK_IN_A_BARE_INSTALL
    with JinaStub(api_key="jina-test-key") as stub:
        out = subprocess.run(
            [str(python), "-c", code, stub.base_url],
            capture_output=True,
            text=True,
            timeout=60,
            env={"TEST_JINA_KEY": "jina-test-key", "PATH": "/usr/bin:/bin"},
        )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result == {"order": [1, 0], "loaded": []}
    cli = subprocess.run([str(env_dir / "bin" / "rerank"), "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "rerank" in cli.stdout


def python_files() -> list[Path]:
    # .bench-venvs: the benchmark peer's own venv (benchmarks/setup_infinity.sh), not project code.
    skip = {".venv", ".bench-venvs", ".git", "build", "models", "runs"}
    return [
        p
        for p in REPO.rglob("*.py")
        if not skip.intersection(p.relative_to(REPO).parts) and "egg-info" not in str(p)
    ]


def test_nothing_outside_tests_imports_from_tests() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+tests\b", re.M)
    offenders = [
        str(p.relative_to(REPO))
        for p in python_files()
        if p.relative_to(REPO).parts[0] != "tests" and pattern.search(p.read_text())
    ]
    assert offenders == []


def test_no_code_reads_rays_private_api() -> None:
    # An underscore module of Ray, or an underscore attribute of a Serve object (batch wrappers,
    # deployments, handles, configs) read anywhere, tests included.
    pattern = re.compile(
        r"ray\._private|serve\._private|\._deployment_config|\.score_pair\._|"
        r"\b(handle|deployment|batch|replica)\w*\._[a-z]\w*"
    )
    offenders = [
        f"{p.relative_to(REPO)}:{m.group(0)}"
        for p in python_files()
        if p.name != "test_layers.py"
        for m in pattern.finditer(p.read_text())
    ]
    assert offenders == []


def test_the_batch_job_runs_the_engine_without_the_serving_layer() -> None:
    """rerank_batch sits beside deployments/, on the core: it needs Ray Data, never Serve's app,
    the web stack or the lab's tools."""
    code = (
        "import json, sys\n"
        "import rerank_batch, rerank_batch.cli\n"
        "print(json.dumps([m for m in ('deployments', 'fastapi', 'starlette', 'rerank_tools', 'ray.serve')"
        " if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
