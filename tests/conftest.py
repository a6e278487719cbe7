"""Fixtures shared across the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RERANK_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the relevance benchmarks). Skips where it is absent (a user's own clone);
    with ``RERANK_REQUIRE_SHARED=1`` (set by ``.ci/run``) its absence is a failure instead."""
    if not (SHARED_DATA / "README.md").is_file():
        reason = f"shared relevance data not found at {SHARED_DATA}"
        if os.environ.get("RERANK_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " (RERANK_REQUIRE_SHARED=1)")
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT cross-encoder (``tests/tiny_models.py``), built once per session."""
    from tests.tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-cross-encoder")
