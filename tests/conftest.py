"""Fixtures shared across the suite."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any, NoReturn

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RERANK_SHARED_DATA", REPO.parent / "shared" / "data"))
K8S_SCHEMAS = Path(os.environ.get("RERANK_K8S_SCHEMAS", REPO.parent / "shared" / "k8s-schemas"))


def skip_where_absent(reason: str) -> NoReturn:
    """Skip a test whose input is absent (a user's own clone or machine); with
    ``RERANK_REQUIRE_SHARED=1`` (set by ``.ci/run``) the absence is a failure instead."""
    if os.environ.get("RERANK_REQUIRE_SHARED") == "1":
        pytest.fail(reason + " (RERANK_REQUIRE_SHARED=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the relevance benchmarks). Skips where it is absent (a user's own clone);
    with ``RERANK_REQUIRE_SHARED=1`` (set by ``.ci/run``) its absence is a failure instead."""
    if not (SHARED_DATA / "README.md").is_file():
        skip_where_absent(f"shared relevance data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def k8s_schemas() -> Path:
    """``../shared/k8s-schemas`` (the KubeRay and Prometheus Operator CRDs, read through
    ``tests/k8s_schema.py``). Skips where it is absent (a user's own clone); with
    ``RERANK_REQUIRE_SHARED=1`` (set by ``.ci/run``) its absence is a failure instead."""
    if not (K8S_SCHEMAS / "README.md").is_file():
        skip_where_absent(f"Kubernetes CRD schemas not found at {K8S_SCHEMAS}")
    return K8S_SCHEMAS


@pytest.fixture(scope="session")
def redis_server() -> Path:
    """The ``redis-server`` binary, with the ``redis-cli`` beside it (Debian's redis-server package,
    which ``make test`` installs where apt-get can). Skips where it is absent; with
    ``RERANK_REQUIRE_SHARED=1`` (set by ``.ci/run``) its absence is a failure instead."""
    found = shutil.which("redis-server")
    if found is None or not Path(found).with_name("redis-cli").is_file():
        skip_where_absent(
            "redis-server (and redis-cli beside it) not found on PATH: on Debian, "
            "apt-get install redis-server"
        )
    return Path(found)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT cross-encoder (``tests/tiny_models.py``), built once per session."""
    from tests.tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-cross-encoder")


@pytest.fixture(scope="session")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's examples in the trec-dl20 candidates layout (4 candidates a query)."""
    from tests.tiny_models import EXAMPLES

    path = tmp_path_factory.mktemp("traffic") / "candidates.jsonl"
    rows = [
        {
            "qid": str(n),
            "query": e.query,
            "candidates": [
                {"docid": f"{n}-{i}", "text": t} for i, t in enumerate([e.relevant, *e.irrelevant])
            ],
        }
        for n, e in enumerate(EXAMPLES)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny yes/no Qwen3 (``tests/tiny_causal_lm.py``), built once per session."""
    from tests.tiny_causal_lm import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-causal-lm")


@pytest.fixture(scope="session")
def trained_tiny(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], Path]:
    """``rerank-train`` run once on ``tests/tiny_training.py``'s dataset from the inverted tiny
    cross-encoder: the model directory, the report and the dataset's directory."""
    import json

    from rerank_tools.train.cli import main
    from tests.tiny_training import inverted_cross_encoder, train_args, write_topic_dataset

    root = tmp_path_factory.mktemp("train")
    data = write_topic_dataset(root / "data")
    start = inverted_cross_encoder(tiny_model_dir, root / "inverted")
    out = root / "trained"
    assert main(train_args(data, start, out)) == 0
    return out, json.loads((out / "report.json").read_text()), data


#: Under ``pytest -n N``, run first, longest first, so that no long test starts last and leaves the
#: other workers idle (their durations are what ``make test`` prints at the end): the cluster tests
#: (before the serving tests' Ray starts on their worker), the serving tests, the evaluation on the
#: shared data, then the heaviest in-process ones. In one process the order stays the files' own:
#: the cluster tests then run before the serving tests' Ray exists.
LONGEST_FIRST = [
    "tests/cluster/test_cluster.py",
    "tests/cluster/test_batch_cluster.py",
    "tests/serving",
    "tests/tools/evaluation/test_shared_data.py",
    "tests/batch/test_job.py",
    "tests/core/backends/test_families.py",
    "tests/core/test_runtimes.py",
    "tests/tools/test_agreement.py",
    "tests/tools/test_train.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N``, the longest tests first (``LONGEST_FIRST``)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return

    def rank(item: pytest.Item) -> int:
        path = Path(item.fspath).relative_to(REPO).as_posix()
        for n, prefix in enumerate(LONGEST_FIRST):
            if path == prefix or path.startswith(prefix + "/"):
                return n
        return len(LONGEST_FIRST)

    items.sort(key=rank)


def ray_group(nodeid: str) -> str | None:
    """``"ray"`` for the serving tests (they share one local Ray) and the cluster tests (each
    starts a Ray cluster of its own), None for others."""
    return "ray" if nodeid.startswith(("tests/serving/", "tests/cluster/")) else None


if importlib.util.find_spec("xdist") is not None:

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        """Under ``pytest -n N`` (``make test TEST_WORKERS=N``): every test a unit of its own,
        handed out as workers free up, but the cluster tests and then the serving tests one unit,
        run by one worker in that order. The serving tests share one local Ray, one Serve
        instance and its applications (``tests/serving/conftest.py``); the cluster tests' faults
        and rolling update are timed against their deadlines and should not run beside that Ray.
        (This is xdist's ``loadgroup``, which reads ``xdist_group`` marks through node ids that
        pytest 9 no longer lets a plugin change.)"""
        from xdist.scheduler import LoadScopeScheduling

        class RayGroup(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return ray_group(nodeid) or nodeid

        return RayGroup(config, log)
