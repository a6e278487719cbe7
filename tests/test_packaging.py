"""Two distributions from one clone: the service (``rerank-service``, pyproject.toml) ships only what
serves, and the lab tools (``rerank-lab``, lab/pyproject.toml) ship ``rerank_tools`` and its console
scripts; the dev lock pins both, the serve lock (the image's) none of the lab's own dependencies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.test_image import DEV_LOCK, SERVE_LOCK, pins

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
REPO = Path(__file__).resolve().parents[1]
SERVICE = tomllib.loads((REPO / "pyproject.toml").read_text())
LAB = tomllib.loads((REPO / "lab" / "pyproject.toml").read_text())
#: The import packages of the service's distribution: the core, the wire contract, the client and
#: the serving layer.
SERVICE_PACKAGES = {"rerank_core", "rerank_wire", "rerank_client", "deployments", "rerank_batch"}
#: Requirements of the lab alone: the image and the service's install must not carry them.
LAB_ONLY = {"ir-measures", "matplotlib", "psutil", "datasets", "accelerate"}


def not_sources(directory: str, names: list[str]) -> set[str]:
    """What a copy of the clone leaves out: hidden entries (git, venvs, caches), weights, build and
    run outputs."""
    outputs = {"models", "runs", "build", "__pycache__"}
    return {n for n in names if n.startswith(".") or n in outputs or n.endswith(".egg-info")}


def top_package(entry_point: str) -> str:
    return entry_point.split(":")[0].split(".")[0]


def requirement_names(project: dict) -> set[str]:
    raw = list(project["project"]["dependencies"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        raw += extra
    return {canonicalize_name(Requirement(r).name) for r in raw}


def test_each_distribution_names_only_its_own_packages_and_scripts() -> None:
    service_find = SERVICE["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in service_find} == SERVICE_PACKAGES
    assert {top_package(t) for t in SERVICE["project"]["scripts"].values()} <= SERVICE_PACKAGES
    assert LAB["tool"]["setuptools"]["packages"]["find"]["include"] == ["rerank_tools*"]
    assert {top_package(t) for t in LAB["project"]["scripts"].values()} == {"rerank_tools"}
    assert not set(SERVICE["project"]["scripts"]) & set(LAB["project"]["scripts"])
    # The lab is the service's user, never the other way round.
    assert "rerank-lab" not in requirement_names(SERVICE)
    assert Requirement("rerank-service[local]") in [Requirement(r) for r in LAB["project"]["dependencies"]]


def test_no_module_of_the_service_imports_the_lab() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+rerank_tools\b", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for package in SERVICE_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_the_service_and_its_image_carry_none_of_the_labs_own_requirements() -> None:
    assert not LAB_ONLY & requirement_names(SERVICE)
    assert requirement_names(LAB) >= LAB_ONLY
    assert not LAB_ONLY & set(pins(SERVE_LOCK))


def test_the_dev_lock_pins_every_lab_requirement_within_its_range() -> None:
    pinned = pins(DEV_LOCK)
    raw = list(LAB["project"]["dependencies"])
    for extra in LAB["project"]["optional-dependencies"].values():
        raw += extra
    for req in map(Requirement, raw):
        if req.name == SERVICE["project"]["name"]:
            continue
        name = canonicalize_name(req.name)
        assert name in pinned and req.specifier.contains(pinned[name], prereleases=True), str(req)


@pytest.mark.timeout(300)
def test_the_service_wheel_ships_no_lab_tool(tmp_path: Path) -> None:
    """Build the service's wheel from a copy of the clone (the build writes beside its sources) and
    read what it holds: its packages and its console scripts, and nothing of ``rerank_tools``."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=not_sources)
    wheel_dir = tmp_path / "wheel"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, str(source), "-w", str(wheel_dir)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheel_dir.glob("rerank_service-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("rerank_service-")} == SERVICE_PACKAGES
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "rerank_tools" not in scripts
    assert set(SERVICE["project"]["scripts"]) == {
        line.split(" = ")[0] for line in scripts.splitlines() if " = " in line
    }
