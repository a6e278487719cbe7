"""The score cache: bounded by memory, least recently used out first, bound to the model."""

from __future__ import annotations

from pathlib import Path

from rerank_core.config import CrossEncoderConfig, ServingConfig
from rerank_core.score_cache import ENTRY_BYTES, ScoreCache, model_fingerprint


def test_hits_misses_and_the_memory_bound() -> None:
    cache = ScoreCache("model-a", 3 * ENTRY_BYTES)
    assert cache.max_entries == 3
    found, keys = cache.lookup([("q", "d1"), ("q", "d2")])
    assert found == [None, None]
    cache.store(keys, [0.5, -1.25])
    assert cache.lookup([("q", "d2"), ("q", "d1")])[0] == [-1.25, 0.5]
    # d1 is now the most recent; two more entries push out the least recent, d2.
    cache.store(cache.lookup([("q", "d3"), ("q", "d4")])[1], [3.0, 4.0])
    assert len(cache) == 3
    assert cache.lookup([("q", "d2"), ("q", "d1")])[0] == [None, 0.5]
    assert cache.info() == {"hits": 3, "misses": 5, "entries": 3, "max_entries": 3}


def test_query_and_document_are_not_confused() -> None:
    cache = ScoreCache("m", 10 * ENTRY_BYTES)
    cache.store(cache.lookup([("ab", "c")])[1], [1.0])
    assert cache.lookup([("a", "bc"), ("c", "ab")])[0] == [None, None]


def test_a_cache_of_zero_bytes_stores_nothing() -> None:
    cache = ScoreCache("m", 0)
    cache.store(cache.lookup([("q", "d")])[1], [1.0])
    assert len(cache) == 0 and cache.lookup([("q", "d")])[0] == [None]


def test_another_model_never_answers_from_the_entries(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"v1")
    config = CrossEncoderConfig(model=str(model))
    first = model_fingerprint(config)
    assert model_fingerprint(config) == first, "the same model, the same fingerprint"
    assert model_fingerprint(config.model_copy(update={"max_length": 64})) != first
    assert model_fingerprint(
        config.model_copy(update={"serving": ServingConfig(max_batch_size=8)})
    ) == first, "serving settings do not change a score"
    (model / "weights.bin").write_bytes(b"version 2")
    second = model_fingerprint(config)
    assert second != first, "new weights in the same directory"

    old, new = ScoreCache(first, 10 * ENTRY_BYTES), ScoreCache(second, 10 * ENTRY_BYTES)
    assert old.key("q", "d") != new.key("q", "d")
