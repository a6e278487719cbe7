"""LLMBackend through the real ``openai`` SDK against a local OpenAI-compatible stub."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from rerank_core.backends.llm import LLMBackend, sliding_windows
from rerank_core.config import LLMConfig
from rerank_core.errors import (
    BackendAuthError,
    BackendBadRequest,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
)
from tests.stubs.openai_chat import OpenAIChatStub, Responder

KEY_ENV = "RERANK_TEST_LLM_KEY"
KEY = "sk-test-FAKE-0123456789abcdef"
BACKEND = "llm-test"

_PASSAGE_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


def prompt_passages(body: dict[str, Any]) -> list[str]:
    """The numbered passages of a listwise prompt, checking they are numbered 0..k-1."""
    found = _PASSAGE_LINE.findall(body["messages"][-1]["content"])
    assert [int(i) for i, _ in found] == list(range(len(found)))
    return [text for _, text in found]


def relevance(passage: str) -> int:
    match = re.search(r"rel=(\d+)", passage)
    assert match, passage
    return int(match.group(1))


def doc_id(passage: str) -> int:
    match = re.search(r"doc (\d+)", passage)
    assert match, passage
    return int(match.group(1))


def sort_by_relevance(body: dict[str, Any]) -> str:
    """A perfect listwise ranker: reads the passages from the prompt, ranks them by ``rel=``."""
    passages = prompt_passages(body)
    ranking = sorted(range(len(passages)), key=lambda i: -relevance(passages[i]))
    return json.dumps({"ranking": ranking})


def answer(content: str) -> Responder:
    return lambda body: content


def docs_with(rels: list[int]) -> list[str]:
    return [f"doc {i} rel={r}" for i, r in enumerate(rels)]


def best_first(rels: list[int]) -> list[int]:
    return sorted(range(len(rels)), key=lambda i: -rels[i])


@pytest.fixture
def stub() -> Iterator[OpenAIChatStub]:
    with OpenAIChatStub(sort_by_relevance) as server:
        yield server


@pytest.fixture
async def make_backend(
    stub: OpenAIChatStub, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., LLMBackend]]:
    monkeypatch.setenv(KEY_ENV, KEY)
    made: list[LLMBackend] = []

    def make(**overrides: Any) -> LLMBackend:
        fields: dict[str, Any] = {
            "api_key_env": KEY_ENV,
            "base_url": stub.base_url,
            "timeout_s": 5.0,
            **overrides,
        }
        backend = LLMBackend(BACKEND, LLMConfig(**fields))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


# -- listwise ---------------------------------------------------------------------------------


async def test_listwise_returns_the_models_order_with_rank_scores(
    stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    rels = [2, 5, 0, 4, 1, 3]
    results = await make_backend().rerank("q", docs_with(rels))

    assert [r.index for r in results] == best_first(rels)
    assert [r.score for r in results] == [1 - rank / 6 for rank in range(6)]
    assert all(0.0 < r.score <= 1.0 and r.raw_score is None for r in results)
    assert len(stub.requests) == 1


async def test_request_carries_model_temperature_json_mode_key_and_cut_passages(
    stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    long_docs = [f"doc {i} rel={i}\n\n" + "abcdefghij " * 30 for i in range(3)]
    # "window" is the local models' option; an LLM sees every document cut all the same.
    await make_backend(max_doc_chars=40).rerank("what is up?", long_docs, long_documents="window")

    (request,) = stub.requests
    assert request.path == "/v1/chat/completions"
    assert request.authorization == f"Bearer {KEY}"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["temperature"] == 0
    assert request.body["response_format"] == {"type": "json_object"}
    assert "what is up?" in request.messages_text()
    # Whitespace collapsed (one passage a line), then cut to max_doc_chars.
    assert prompt_passages(request.body) == [" ".join(d.split())[:40] for d in long_docs]


async def test_top_n_and_empty_input(
    stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    backend = make_backend()
    rels = [1, 3, 2]
    assert [r.index for r in await backend.rerank("q", docs_with(rels), top_n=2)] == [1, 2]
    assert len(await backend.rerank("q", docs_with(rels), top_n=10)) == 3
    calls = len(stub.requests)
    assert await backend.rerank("q", []) == []
    assert len(stub.requests) == calls


async def test_sliding_window_pass_as_rankgpt_on_reversed_input(
    stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    # 25 documents, the best last: windows (15,25), (10,20), (5,15), (0,10), back to front.
    results = await make_backend(window_size=10, step=5).rerank("q", docs_with(list(range(25))))

    windows = [sorted(doc_id(p) for p in prompt_passages(r.body)) for r in stub.requests]
    best_five = [20, 21, 22, 23, 24]
    assert windows == [
        list(range(15, 25)),
        list(range(10, 15)) + best_five,
        list(range(5, 10)) + best_five,
        list(range(0, 5)) + best_five,
    ]
    # The best window - step documents are carried to the front in order; the rest is what one
    # RankGPT pass leaves (each block sorted within itself).
    assert [r.index for r in results] == [
        *[24, 23, 22, 21, 20],
        *[4, 3, 2, 1, 0],
        *[9, 8, 7, 6, 5],
        *[14, 13, 12, 11, 10],
        *[19, 18, 17, 16, 15],
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_sliding_window_carries_the_best_to_the_front_from_anywhere(
    seed: int, stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    rels = list(range(25))
    random.Random(seed).shuffle(rels)
    results = await make_backend(window_size=10, step=5).rerank("q", docs_with(rels))

    assert len(stub.requests) == 4
    assert sorted(r.index for r in results) == list(range(25))
    assert [r.index for r in results][:5] == best_first(rels)[:5]


def test_sliding_windows_always_reach_the_head_of_the_list() -> None:
    assert sliding_windows(25, 10, 5) == [(15, 25), (10, 20), (5, 15), (0, 10)]
    # RankGPT's own loop stops at start -3 here and never shows documents 0 and 1 to the model.
    assert sliding_windows(27, 10, 5) == [(17, 27), (12, 22), (7, 17), (2, 12), (0, 7)]
    assert sliding_windows(8, 10, 5) == [(0, 8)]


async def test_an_unreadable_window_keeps_its_order_and_the_others_still_rank(
    stub: OpenAIChatStub,
    make_backend: Callable[..., LLMBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def garbage_first(body: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        return "I'd rather not." if calls == 1 else sort_by_relevance(body)

    stub.set_responder(garbage_first)
    rels = [3, 9, 0, 14, 7, 12, 1, 5, 10, 2, 8, 13, 4, 11, 6]
    with caplog.at_level(logging.WARNING, logger="rerank_core.backends.llm"):
        results = await make_backend(window_size=10, step=5).rerank("q", docs_with(rels))

    # Window (5,15) was unreadable and kept; window (0,10) was ranked.
    assert [r.index for r in results] == [
        *sorted(range(10), key=lambda i: -rels[i]),
        *range(10, 15),
    ]
    assert "no ranking could be read" in caplog.text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"ranking": [2, 0, 1, 4, 3]}', [2, 0, 1, 4, 3]),
        ('```json\n{"ranking": [4, 3, 2, 1, 0]}\n```', [4, 3, 2, 1, 0]),
        ('Sure! Here it is: {"ranking": [1, 0, 2, 3, 4]} Hope this helps.', [1, 0, 2, 3, 4]),
        ('Passages [3] and [4] matter most: {"ranking": [4, 3]}', [4, 3, 0, 1, 2]),
        ("[3, 1, 4, 0, 2]", [3, 1, 4, 0, 2]),
        ('{"order": [4, 0, 3, 1, 2]}', [4, 0, 3, 1, 2]),
        ('{"ranking": [7, -1, "2", 1.5, true, null, 3, 0]}', [3, 0, 1, 2, 4]),
        ('{"ranking": [1, 1, 0, 1, 0]}', [1, 0, 2, 3, 4]),
        ('{"ranking": [4]}', [4, 0, 1, 2, 3]),
        ('{"ranking": [2, 0, 1', [0, 1, 2, 3, 4]),
        ("not json at all", [0, 1, 2, 3, 4]),
        ('{"ranking": "2 > 0 > 1"}', [0, 1, 2, 3, 4]),
        ('{"ranking": [99, 100]}', [0, 1, 2, 3, 4]),
        ("", [0, 1, 2, 3, 4]),
    ],
)
async def test_listwise_survives_what_llms_return(
    content: str,
    expected: list[int],
    stub: OpenAIChatStub,
    make_backend: Callable[..., LLMBackend],
) -> None:
    stub.set_responder(answer(content))
    results = await make_backend().rerank("q", docs_with([0] * 5))
    assert [r.index for r in results] == expected
    assert [r.score for r in results] == [1 - rank / 5 for rank in range(5)]


# -- pointwise --------------------------------------------------------------------------------


async def test_pointwise_grades_are_normalised(
    stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    answers = {
        "alpha": '{"score": 7}',
        "beta": '{"score": 10}',
        "gamma": '{"score": 15}',
        "delta": '{"score": -2}',
        "epsilon": '```json\n{"score": 3.5}\n```',
        "zeta": '{"score": "8"}',
        "eta": "I cannot grade this passage.",
    }

    def grade(body: dict[str, Any]) -> str:
        passage = re.search(r"^Passage: (.*)$", body["messages"][-1]["content"], re.M)
        assert passage
        return answers[passage.group(1)]

    stub.set_responder(grade)
    results = await make_backend(mode="pointwise").rerank("q", list(answers))

    got = {r.index: (r.score, r.raw_score) for r in results}
    assert got == {
        0: (0.7, 7.0),
        1: (1.0, 10.0),
        2: (1.0, 15.0),
        3: (0.0, -2.0),
        4: (0.35, 3.5),
        5: (0.8, 8.0),
        6: (0.0, None),  # unreadable: scored 0, ranked after every graded document
    }
    assert [r.index for r in results] == [1, 2, 5, 0, 4, 3, 6]
    assert len(stub.requests) == 7
    assert all(r.body["response_format"] == {"type": "json_object"} for r in stub.requests)


@pytest.mark.parametrize("requests", [1, 2])
async def test_pointwise_concurrency_is_bounded_across_requests(
    requests: int, stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    stub.set_responder(answer('{"score": 5}'))
    stub.delay_s = 0.1
    backend = make_backend(mode="pointwise", max_concurrency=3)

    batches = await asyncio.gather(*(backend.rerank("q", ["d"] * 6) for _ in range(requests)))

    assert [len(b) for b in batches] == [6] * requests
    assert len(stub.requests) == 6 * requests
    assert stub.max_in_flight == 3


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["listwise", "pointwise"])
@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("429", BackendRateLimited),
        ("500", BackendUnavailable),
        ("401", BackendAuthError),
        ("403", BackendAuthError),
        ("400", BackendBadRequest),
        ("slow", BackendTimeout),
        ("bad_body", BackendUnavailable),
    ],
)
async def test_api_failures_map_to_typed_errors(
    failure: str,
    error: type[BackendError],
    mode: str,
    stub: OpenAIChatStub,
    make_backend: Callable[..., LLMBackend],
) -> None:
    stub.set_failure(failure)
    stub.slow_s = 5.0
    backend = make_backend(mode=mode, timeout_s=0.3)
    started = time.monotonic()

    with pytest.raises(error) as caught:
        await backend.rerank("q", docs_with([1, 2, 3]))

    assert type(caught.value) is error
    assert caught.value.backend == BACKEND
    assert time.monotonic() - started < 2.0
    # No SDK retries: the fallback chain owns them. Pointwise sends one call per document at most.
    assert 1 <= len(stub.requests) <= (1 if mode == "listwise" else 3)


async def test_a_failure_limited_to_one_call_clears(
    stub: OpenAIChatStub, make_backend: Callable[..., LLMBackend]
) -> None:
    stub.set_failure("500", times=1)
    backend = make_backend()
    with pytest.raises(BackendUnavailable):
        await backend.rerank("q", docs_with([1, 2]))
    assert [r.index for r in await backend.rerank("q", docs_with([1, 2]))] == [1, 0]


async def test_connection_refused_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIChatStub() as gone:
        url = gone.base_url
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = LLMBackend(BACKEND, LLMConfig(api_key_env=KEY_ENV, base_url=url, timeout_s=2.0))
    with pytest.raises(BackendUnavailable):
        await backend.rerank("q", ["a", "b"])
    await backend.close()


async def test_missing_key_fails_at_call_time_without_a_request(
    stub: OpenAIChatStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    backend = LLMBackend(BACKEND, LLMConfig(api_key_env=KEY_ENV, base_url=stub.base_url))

    with pytest.raises(BackendAuthError, match=KEY_ENV):
        await backend.rerank("q", ["a", "b"])
    assert stub.requests == []
    await backend.close()


async def test_the_key_appears_in_no_error_log_or_repr(
    stub: OpenAIChatStub,
    make_backend: Callable[..., LLMBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make_backend()
    await backend.rerank("q", docs_with([1, 2]))
    # The stub's 401 quotes the whole key it was sent, as a careless vendor would.
    stub.set_failure("401")

    with pytest.raises(BackendAuthError) as caught:
        await backend.rerank("q", docs_with([1, 2]))

    assert KEY in stub.requests[-1].authorization  # the key was really sent ...
    exc = caught.value
    seen = [
        str(exc),
        repr(exc),
        json.dumps(exc.to_dict()),
        "".join(traceback.format_exception(exc)),
        caplog.text,
        repr(backend),
    ]
    assert all(KEY not in text for text in seen)  # ... and shows up nowhere of ours

