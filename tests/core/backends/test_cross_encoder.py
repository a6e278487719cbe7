"""The cross-encoder backend through sentence-transformers' real loading path, on the tiny model."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from rerank_core.backends import build_backend
from rerank_core.backends.batching import length_batches
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.config import ConfigError, CrossEncoderConfig, load_config
from rerank_core.errors import BackendUnavailable, InvalidRequest
from rerank_core.types import sigmoid
from tests.tiny_models import EXAMPLES, FILLER, MAX_LENGTH, build_tiny_cross_encoder


def make_backend(model_dir: Path, **over: Any) -> CrossEncoderBackend:
    backend = build_backend("tiny", CrossEncoderConfig(model=str(model_dir), **over))
    assert isinstance(backend, CrossEncoderBackend)
    return backend


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> CrossEncoderBackend:
    return make_backend(tiny_model_dir)


@contextmanager
def forward_shapes(backend: CrossEncoderBackend) -> Iterator[list[tuple[int, int]]]:
    """(pairs, padded tokens) of every forward pass of the real model while the block runs.

    Observed on the BERT encoder: sentence-transformers calls the classification model's
    ``forward`` directly, past module hooks, and the encoder is what that forward runs.
    """
    shapes: list[tuple[int, int]] = []

    def record(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        shapes.append(tuple(input_ids.shape))

    handle = backend.model.model.bert.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield shapes
    finally:
        handle.remove()


def words(n: int, offset: int = 0) -> str:
    return " ".join(FILLER[(i + offset) % len(FILLER)] for i in range(n))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.query for e in EXAMPLES])
async def test_the_relevant_document_ranks_first(
    backend: CrossEncoderBackend, example: Any
) -> None:
    documents = [*example.irrelevant, example.relevant]
    results = await backend.rerank(example.query, documents)
    assert results[0].index == len(documents) - 1
    assert sorted(r.index for r in results) == list(range(len(documents)))
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for r in results:
        assert 0.0 <= r.score <= 1.0
        assert r.raw_score is not None
        # A one-label model's configured activation is the sigmoid of the raw logit.
        assert r.score == pytest.approx(sigmoid(r.raw_score))


async def test_top_n_keeps_the_best(backend: CrossEncoderBackend) -> None:
    example = EXAMPLES[1]
    documents = [example.relevant, *example.irrelevant]
    every = await backend.rerank(example.query, documents)
    top = await backend.rerank(example.query, documents, top_n=2)
    assert top == every[:2]
    assert await backend.rerank(example.query, []) == []


def test_raw_scores_are_the_models_logits(backend: CrossEncoderBackend) -> None:
    example = EXAMPLES[2]
    pairs = [(example.query, d) for d in (example.relevant, *example.irrelevant)]
    logits = backend.model.predict(pairs, activation_fn=torch.nn.Identity())
    assert backend.score_pairs(pairs) == pytest.approx([float(x) for x in logits], abs=1e-5)


def mixed_length_pairs() -> list[tuple[str, str]]:
    """Pairs from 3 to about 60 tokens, in no order of length, some repeated."""
    pairs = []
    for i, n_words in enumerate([40, 1, 25, 3, 55, 9, 2, 33, 14, 50, 5, 21]):
        example = EXAMPLES[i % len(EXAMPLES)]
        document = f"{words(n_words, offset=i)} {example.relevant if i % 3 == 0 else ''}".strip()
        pairs.append((example.query, document))
    pairs.append(pairs[0])
    return pairs


def test_batches_are_sorted_by_length_and_scores_come_back_in_input_order(
    tiny_model_dir: Path,
) -> None:
    budget = 128
    backend = make_backend(tiny_model_dir, batch_size=3, max_tokens_per_batch=budget)
    pairs = mixed_length_pairs()
    lengths = backend.tokenize(pairs).lengths
    assert max(lengths) <= budget and max(lengths) >= 8 * min(lengths)

    with forward_shapes(backend) as shapes:
        batched = backend.score_pairs(pairs)
    alone = [backend.score_pairs([pair])[0] for pair in pairs]

    assert batched == pytest.approx(alone, abs=1e-5)
    assert batched[0] == pytest.approx(batched[-1], abs=1e-6)
    # Every pair went through exactly one forward pass, none over either cap.
    assert sum(n for n, _ in shapes) == len(pairs)
    assert all(n <= 3 for n, _ in shapes)
    assert all(n * width <= budget for n, width in shapes)
    # Sorted longest first, so padding follows the lengths down.
    widths = [width for _, width in shapes]
    assert widths == sorted(widths, reverse=True)
    assert widths[0] == max(lengths)


def test_the_token_budget_caps_a_batch_before_the_pair_count_does(tiny_model_dir: Path) -> None:
    backend = make_backend(tiny_model_dir, batch_size=32, max_tokens_per_batch=64)
    pairs = [("cat", words(28, offset=i)) for i in range(10)]  # 32 tokens each
    with forward_shapes(backend) as shapes:
        backend.score_pairs(pairs)
    assert shapes == [(2, 32)] * 5


def best_cuts_by_brute_force(
    widths: list[int], max_items: int, max_tokens: int, cost: int
) -> int:
    """The least padded tokens plus ``cost`` a batch over every way to cut ``widths`` (sorted
    longest first) into consecutive batches under both caps."""
    n = len(widths)
    best = None
    for mask in range(1 << (n - 1)):
        starts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1]
        bounds = list(zip(starts, [*starts[1:], n], strict=True))
        if any(
            b - a > max_items or (b - a > 1 and (b - a) * widths[a] > max_tokens)
            for a, b in bounds
        ):
            continue
        total = sum((b - a) * widths[a] + cost for a, b in bounds)
        best = total if best is None else min(best, total)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(40))
def test_batches_are_cut_where_padding_costs_more_than_a_pass(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [
        rng.choice([rng.randint(5, 40), rng.randint(100, 200)]) for _ in range(rng.randint(1, 11))
    ]
    max_items, max_tokens, cost = (
        rng.randint(1, 6),
        rng.choice([200, 400, 5000]),
        rng.choice([0, 16, 64, 500]),
    )
    batches = length_batches(lengths, max_items, max_tokens, cost)

    # Every index once, longest first, each batch under both caps (a lone long item excepted).
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) <= max_items
        assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= max_tokens
    # And no other cut of the same order costs less.
    total = sum(len(b) * lengths[b[0]] + cost for b in batches)
    widths = sorted(lengths, reverse=True)
    assert total == best_cuts_by_brute_force(widths, max_items, max_tokens, cost)


def test_short_and_long_pairs_go_in_separate_passes(tiny_model_dir: Path) -> None:
    # Two long pairs and four short ones: one pass would pad the short ones to the long width.
    pairs = [("cat", words(40, offset=i)) for i in range(2)]
    pairs += [("cat", words(3, offset=i)) for i in range(4)]
    split = make_backend(tiny_model_dir, batch_size=32, batch_cost_tokens=16)
    with forward_shapes(split) as shapes:
        split_scores = split.score_pairs(pairs)
    assert [n for n, _ in shapes] == [2, 4]
    assert shapes[0][1] > 5 * shapes[1][1]

    # A pass that costs more than all the padding it would save: one batch.
    joined = make_backend(tiny_model_dir, batch_size=32, batch_cost_tokens=10_000)
    with forward_shapes(joined) as shapes:
        joined_scores = joined.score_pairs(pairs)
    assert [n for n, _ in shapes] == [6]
    assert split_scores == pytest.approx(joined_scores, abs=1e-5)


def test_the_pass_cost_is_measured_at_load_unless_configured(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert make_backend(tiny_model_dir, batch_cost_tokens=0).batch_cost_tokens == 0
    assert make_backend(tiny_model_dir, batch_cost_tokens=77).batch_cost_tokens == 77
    # A model whose pass takes 20 ms plus 20 us a padded token: a pass costs 1,000 tokens.
    backend = make_backend(tiny_model_dir, batch_cost_tokens=5)

    def slow_pass(features: dict[str, Any]) -> list[float]:
        rows, width = features["input_ids"].shape
        time.sleep(0.020 + 20e-6 * rows * width)
        return [0.0] * rows

    monkeypatch.setattr(backend, "forward_batch", slow_pass)
    measured = backend.measure_batch_cost(repeats=3)
    assert backend.batch_cost_tokens == measured
    assert 500 <= measured <= 2000
    # Passes that cost nothing but their tokens: a pass is worth (almost) no padding.
    monkeypatch.setattr(
        backend,
        "forward_batch",
        lambda f: time.sleep(40e-6 * f["input_ids"].size) or [0.0] * len(f["input_ids"]),
    )
    assert backend.measure_batch_cost(repeats=3) <= 100


def test_a_pair_longer_than_the_budget_is_scored_alone(tiny_model_dir: Path) -> None:
    backend = make_backend(tiny_model_dir, max_tokens_per_batch=64)
    pairs = [("cat", words(300)), ("cat", "the cat"), ("cat", "a kitten")]
    with forward_shapes(backend) as shapes:
        scores = backend.score_pairs(pairs)
    # The tokenizer truncates the long pair to the model's max length.
    assert shapes == [(1, MAX_LENGTH), (2, 6)]
    assert all(math.isfinite(s) for s in scores)


def test_score_pairs_from_many_threads_at_once_match_one_at_a_time(
    backend: CrossEncoderBackend,
) -> None:
    requests = [[(e.query, d) for d in (e.relevant, *e.irrelevant)] for e in EXAMPLES] * 3
    expected = [backend.score_pairs(pairs) for pairs in requests]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(backend.score_pairs, requests))
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=1e-5)


async def test_window_mode_scores_a_long_document_by_its_best_window(tiny_model_dir: Path) -> None:
    example = EXAMPLES[0]
    # Filler past the model's max length, the relevant passage at the very end: truncation cuts
    # it off, a window holds it.
    long_document = f"{words(200)} {example.relevant}"
    documents = [*example.irrelevant, long_document]
    truncating = make_backend(tiny_model_dir)
    windowing = make_backend(
        tiny_model_dir, long_documents="window", window_chars=200, window_overlap_chars=40
    )
    assert len(windowing.windows_for(documents)[0]) > len(documents)

    truncated = {r.index: r for r in await truncating.rerank(example.query, documents)}
    windowed = await windowing.rerank(example.query, documents)
    long_index = len(documents) - 1
    assert windowed[0].index == long_index
    assert windowed[0].raw_score is not None and truncated[long_index].raw_score is not None
    assert windowed[0].raw_score > truncated[long_index].raw_score + 1.0
    # The long document's score is its best window's.
    best_window = max(
        truncating.score_pairs([(example.query, w) for w in windowing.windows_for([long_document])[0]])
    )
    assert windowed[0].raw_score == pytest.approx(best_window, abs=1e-5)
    # Short documents are one window each: scored as in truncate mode.
    for r in windowed[1:]:
        assert r.raw_score == pytest.approx(truncated[r.index].raw_score, abs=1e-5)
    # A request may ask for windows from a backend configured to truncate.
    asked = await truncating.rerank(example.query, documents, long_documents="window")
    assert asked[0].index == long_index


async def test_an_unknown_long_documents_mode_is_the_callers_error(
    backend: CrossEncoderBackend,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await backend.rerank("cat", ["a cat"], long_documents="shred")
    assert info.value.field == "long_documents"


def test_device_health_check_and_activation(backend: CrossEncoderBackend) -> None:
    assert backend.device == "cpu"
    assert backend.num_labels == 1
    backend.health_check()
    assert backend.to_relevance(0.0) == 0.5
    assert backend.to_relevance(-50.0) == pytest.approx(0.0, abs=1e-12)


def test_softmax_needs_a_two_label_model(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"backends\.tiny\.activation"):
        make_backend(tiny_model_dir, activation="softmax")


def test_a_missing_model_directory_is_unavailable_and_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    missing.mkdir()
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        make_backend(missing)


def test_an_overlap_as_long_as_the_window_is_rejected(tiny_model_dir: Path) -> None:
    entry = {"type": "cross_encoder", "model": str(tiny_model_dir)}
    with pytest.raises(ConfigError, match=r"backends\.tiny\.cross_encoder.*window_overlap_chars"):
        load_config({"backends": {"tiny": {**entry, "window_chars": 200, "window_overlap_chars": 200}}})


def test_the_tiny_model_build_is_reused(tiny_model_dir: Path) -> None:
    weights = tiny_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_cross_encoder(tiny_model_dir) == tiny_model_dir
    assert weights.stat().st_mtime_ns == before


def test_the_event_loop_stays_free_while_scoring(backend: CrossEncoderBackend) -> None:
    async def both() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await backend.rerank("cat", [words(100, offset=i) for i in range(64)])
        ticker.cancel()
        return ticks

    assert asyncio.run(both()) > 1


def test_a_gpu_configured_where_there_is_none_is_a_config_error(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = CrossEncoderConfig(model=str(tiny_model_dir), device="cuda")
    # Refused at load, naming the field, and not a retryable backend failure.
    with pytest.raises(ConfigError, match=r"backends\.tiny\.device: 'cuda'.*CUDA is not available"):
        build_backend("tiny", config)
