"""A causal-LM reranker, a model trained by ``rerank-train`` and the tiny cross-encoder in OpenVINO
computing in bfloat16, each served by configuration alone in its own model deployment (a second
application beside the shared one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from rerank_core.backends import build_backend
from rerank_core.backends.local import cpu_has_bf16
from rerank_core.config import CrossEncoderConfig
from tests.serving.conftest import serving
from tests.tiny_causal_lm import backend_config
from tests.tiny_models import EXAMPLES

pytestmark = pytest.mark.serve
PREFIX = "/local-models"


@pytest.fixture(scope="module")
def url(
    ray_serve: int,
    tiny_causal_lm_dir: Path,
    trained_tiny: tuple[Path, dict[str, Any], Path],
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    from ray import serve

    from deployments.app import build_app

    trained_dir, _, _ = trained_tiny
    # Beside the shared app on the tests' 2-CPU Ray: small CPU shares, so both fit.
    lm = {**backend_config(tiny_causal_lm_dir), "serving": serving(num_cpus=0.1)}
    lm.pop("device")
    config = {
        "backends": {
            "lm": lm,
            "trained": {"type": "cross_encoder", "model": str(trained_dir), "serving": serving(num_cpus=0.1)},
            "tiny-bf16": {
                "type": "cross_encoder",
                "model": str(tiny_model_dir),
                "runtime": "openvino",
                "cpu_dtype": "bfloat16",
                "export_cache_dir": str(tmp_path_factory.mktemp("exports")),
                "serving": serving(num_cpus=0.1),
            },
        },
        "routes": {"lm-then-trained": {"backends": ["lm", "trained"]}},
        "router": {"num_cpus": 0.05},
    }
    serve.run(build_app({"service": config}), name="local-models", route_prefix=PREFIX)
    try:
        yield f"http://127.0.0.1:{ray_serve}{PREFIX}"
    finally:
        serve.delete("local-models")


def rerank(url: str, model: str, query: str, documents: list[str]) -> dict[str, Any]:
    response = requests.post(
        url + "/rerank", json={"query": query, "documents": documents, "model": model}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_causal_lm_ranks_the_relevant_document_first(url: str) -> None:
    for ex in EXAMPLES:
        docs = [*ex.irrelevant, ex.relevant]
        body = rerank(url, "lm-then-trained", ex.query, docs)
        assert body["backend"] == "lm" and not body["fallback"]
        assert body["results"][0]["index"] == len(docs) - 1, ex.query
        assert all(0.0 <= r["score"] <= 1.0 for r in body["results"])


async def test_the_trained_model_answers_as_in_process(
    url: str, trained_tiny: tuple[Path, dict[str, Any], Path]
) -> None:
    trained_dir, _, _ = trained_tiny
    local = build_backend("trained", CrossEncoderConfig(model=str(trained_dir), device="cpu"))
    ex = EXAMPLES[0]
    docs = [*ex.irrelevant, ex.relevant]
    body = rerank(url, "trained", ex.query, docs)
    expected = await local.rerank(ex.query, docs)
    assert [r["index"] for r in body["results"]] == [s.index for s in expected]
    assert [r["score"] for r in body["results"]] == pytest.approx([s.score for s in expected], abs=1e-4)


async def test_openvino_in_bfloat16_is_a_change_of_config_keeping_the_float32_order(
    url: str, tiny_model_dir: Path
) -> None:
    local = build_backend("tiny", CrossEncoderConfig(model=str(tiny_model_dir), device="cpu"))
    largest_difference = 0.0
    for ex in EXAMPLES:
        docs = [*ex.irrelevant, ex.relevant]
        body = rerank(url, "tiny-bf16", ex.query, docs)
        assert body["backend"] == "tiny-bf16" and not body["fallback"]
        expected = await local.rerank(ex.query, docs)
        assert [r["index"] for r in body["results"]] == [s.index for s in expected], ex.query
        served = [r["raw_score"] for r in body["results"]]
        assert served == pytest.approx([s.raw_score for s in expected], abs=0.1)
        largest_difference = max(
            largest_difference, *(abs(a - s.raw_score) for a, s in zip(served, expected, strict=True))
        )
    if cpu_has_bf16():
        # The replica computed in bfloat16, not in float32: its scores moved by more than
        # float32's rounding (under 1e-4 between runtimes).
        assert largest_difference > 1e-4
