"""The scoring engine every local family runs in: each family's tokenizing runs on the engine's
tokenizer thread and its forward passes on the model's thread, whatever the family; one request in,
one answer (ranking and timing) out; the score cache answers repeats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rerank_core.backends import build_backend
from rerank_core.backends.local import LocalModelBackend, ScoredPairs
from rerank_core.config import BiEncoderConfig, CausalLMConfig, CrossEncoderConfig
from rerank_core.types import Lane, RankRequest
from tests.tiny_causal_lm import backend_config
from tests.tiny_models import EXAMPLES

EX = EXAMPLES[0]
DOCUMENTS = [*EX.irrelevant, EX.relevant] * 10


def family_backend(
    family: str, tiny_model_dir: Path, tiny_causal_lm_dir: Path, **serving: Any
) -> LocalModelBackend:
    # Small chunks, so a request of 40 documents is several chunks and tokenizing runs ahead.
    settings = {"serving": {"max_batch_size": 8, **serving}, "batch_size": 4}
    if family == "cross_encoder":
        config: Any = CrossEncoderConfig(model=str(tiny_model_dir), device="cpu", **settings)
    elif family == "bi_encoder":
        config = BiEncoderConfig(device="cpu", **settings)
    else:
        config = CausalLMConfig(**backend_config(tiny_causal_lm_dir, **settings))
    backend = build_backend(family, config)
    assert isinstance(backend, LocalModelBackend)
    return backend


def record_threads(backend: LocalModelBackend, step: str, seen: list[str]) -> None:
    original: Callable[..., Any] = getattr(backend, step)

    def recorded(*args: Any) -> Any:
        seen.append(threading.current_thread().name)
        return original(*args)

    setattr(backend, step, recorded)


FAMILIES = ["cross_encoder", "bi_encoder", "causal_lm"]


@pytest.mark.parametrize("family", FAMILIES)
async def test_tokenizing_runs_off_the_model_thread(
    family: str, tiny_model_dir: Path, tiny_causal_lm_dir: Path
) -> None:
    backend = family_backend(family, tiny_model_dir, tiny_causal_lm_dir, score_cache_mib=0)
    tokenized: list[str] = []
    forwarded: list[str] = []
    record_threads(backend, "tokenize", tokenized)
    record_threads(backend, "forward_batch", forwarded)

    answer = await backend.answer(RankRequest(EX.query, DOCUMENTS, top_n=3))

    assert len(tokenized) == len(DOCUMENTS) // 8, "one tokenizing per chunk of max_batch_size"
    assert forwarded, "the model ran"
    assert {name.rsplit("_", 1)[0] for name in tokenized} == {f"{family}-pre"}
    assert {name.rsplit("_", 1)[0] for name in forwarded} == {f"{family}-model"}
    assert len(answer.results) == 3 and answer.results[0].index % 4 == 3
    assert answer.timing is not None and answer.timing.pairs == len(DOCUMENTS)
    # The scores are the family's own, as the blocking path computes them.
    expected = backend.score_pairs([(EX.query, d) for d in DOCUMENTS])
    assert [s.raw_score for s in answer.results] == pytest.approx(
        sorted(expected, reverse=True)[:3], abs=1e-6
    )


@pytest.mark.parametrize("family", FAMILIES)
async def test_the_score_cache_answers_repeats(
    family: str, tiny_model_dir: Path, tiny_causal_lm_dir: Path
) -> None:
    backend = family_backend(family, tiny_model_dir, tiny_causal_lm_dir)
    forwarded: list[str] = []
    request = RankRequest(EX.query, DOCUMENTS)
    first = await backend.answer(request)
    # Four distinct documents, ten times over: each distinct pair is scored once.
    assert first.timing is not None and first.timing.pairs == 4
    record_threads(backend, "forward_batch", forwarded)
    again = await backend.answer(request)
    assert forwarded == [], "every pair came from the cache"
    assert again.timing is not None and again.timing.cached == len(DOCUMENTS)
    assert again.timing.pairs == 0
    assert again.results == first.results


async def test_the_scorer_is_told_each_requests_lane(tiny_model_dir: Path) -> None:
    backend = family_backend("cross_encoder", tiny_model_dir, tiny_model_dir, score_cache_mib=0)
    lanes: list[str] = []
    scorer = backend.pair_scorer

    async def recorded(pairs: list[tuple[str, str]], lane: Lane) -> ScoredPairs:
        lanes.append(lane)
        return await scorer(pairs, lane)

    backend.pair_scorer = recorded
    await backend.answer(RankRequest(EX.query, DOCUMENTS[:4]))
    await backend.answer(RankRequest(EX.query, DOCUMENTS[:4], lane="bulk"))
    assert lanes == ["interactive", "bulk"]


async def test_close_stops_the_engines_threads(tiny_model_dir: Path) -> None:
    # A name of its own: the threads of other tests' backends are not this one's.
    backend = build_backend("closing", CrossEncoderConfig(model=str(tiny_model_dir), device="cpu"))
    assert isinstance(backend, LocalModelBackend)
    await backend.answer(RankRequest(EX.query, DOCUMENTS[:4], None))
    mine = [t for t in threading.enumerate() if t.name.startswith("closing-")]
    assert {t.name.rsplit("_", 1)[0] for t in mine} == {"closing-pre", "closing-model"}
    await backend.close()
    for thread in mine:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in mine)
    with pytest.raises(RuntimeError):
        await backend.answer(RankRequest(EX.query, ["a new document"], None))
    await backend.close()  # a second close is harmless
