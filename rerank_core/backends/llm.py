"""An OpenAI chat model (or any OpenAI-compatible endpoint) used as a reranker.

Two modes, chosen by ``LLMConfig.mode``:

- **listwise** (RankGPT): the model sees numbered passages and answers ``{"ranking": [...]}``, best
  first. A list longer than ``window_size`` is ranked by a sliding window that starts at the end
  of the list and moves to the front by ``step``; each window's answer reorders that window in
  place, so the best documents are carried to the front. One pass guarantees that the best
  ``window_size - step`` documents end up first and in order; it does not fully sort the rest.
  Scores are rank-based: ``1 - rank / n`` (1.0 for the best, ``1/n`` for the last).
- **pointwise**: one call per document answering ``{"score": 0-10}``; score = grade / 10 clamped
  into [0, 1], ``raw_score`` = the grade.

LLM answers are read leniently, because models do not always follow the format: the JSON value may
sit inside code fences or prose; a bare list stands for the ranking; indices out of range, not
integers, or repeated (after their first occurrence) are dropped; documents the answer leaves out
follow the ranked ones in their original order. A listwise answer with no readable ranking keeps
that window's order (logged, the request does not fail); a pointwise answer with no readable grade
scores 0.0 with ``raw_score`` None, so the document ranks after every graded one. Errors of the API
itself (timeouts, 429, 5xx, auth) become the typed errors of ``rerank_core.errors``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from rerank_core.backends._http import malformed, status_error, timed_out, unreachable
from rerank_core.backends.base import Backend
from rerank_core.config import LLMConfig
from rerank_core.errors import BackendAuthError, BackendError
from rerank_core.types import Answer, RankRequest, Scored, clamp01, top_n_of

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest part of a vendor error message quoted in this project's errors.

LISTWISE_SYSTEM = (
    "You are RankGPT, an assistant that ranks passages by their relevance to a search query. "
    "You answer with a JSON object only."
)
POINTWISE_SYSTEM = (
    "You judge how relevant a passage is to a search query. You answer with a JSON object only."
)


def passage_text(text: str, max_chars: int) -> str:
    """A document as the model sees it: whitespace runs collapsed (one passage a line, fewer
    tokens), then cut to ``max_chars`` characters."""
    return " ".join(text.split())[:max_chars]


def listwise_prompt(query: str, passages: Sequence[str]) -> str:
    """The user message asking for a ranking of ``passages`` (already cut), numbered from 0."""
    numbered = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages))
    last = len(passages) - 1
    return (
        f"Search query: {query}\n\n"
        f"{len(passages)} passages, each with its index in brackets:\n{numbered}\n\n"
        f"Rank the passages by relevance to the search query, most relevant first. Answer with "
        f'a JSON object {{"ranking": [...]}} listing every index from 0 to {last} exactly once.'
    )


def pointwise_prompt(query: str, passage: str) -> str:
    """The user message asking for a 0-10 relevance grade of one passage (already cut)."""
    return (
        f"Search query: {query}\n\n"
        f"Passage: {passage}\n\n"
        "How relevant is the passage to the search query, from 0 (irrelevant) to 10 (answers it "
        'perfectly)? Answer with a JSON object {"score": <number from 0 to 10>}.'
    )


_DECODER = json.JSONDecoder()


def extract_json(text: str) -> Any | None:
    """The JSON value an LLM's answer holds: the whole text if it is JSON, else the first JSON
    object in it, else the first JSON array (so fences and prose around the value do not matter,
    and an object wins over a bracketed word before it). None when there is none."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for opener in ("{", "["):
        for match in re.finditer(re.escape(opener), text):
            try:
                return _DECODER.raw_decode(text, match.start())[0]
            except json.JSONDecodeError:
                continue
    return None


def parse_ranking(content: str | None, k: int) -> list[int] | None:
    """The permutation of ``range(k)`` an answer gives, best first: integer indices in range,
    first occurrence kept, then the indices it left out in their original order. None when the
    answer holds no usable index (the caller keeps the original order)."""
    value = extract_json(content) if content else None
    if isinstance(value, dict):
        # Models sometimes rename the key ("rankings", "order"): take the first list they give.
        value = value.get("ranking", next((v for v in value.values() if isinstance(v, list)), None))
    if not isinstance(value, list):
        return None
    ranked = dict.fromkeys(
        i for i in value if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k
    )
    if not ranked:
        return None
    return [*ranked, *(i for i in range(k) if i not in ranked)]


def parse_grade(content: str | None) -> float | None:
    """The finite number an answer gives as ``{"score": x}`` (or bare), a numeric string accepted;
    None when there is none."""
    value = extract_json(content) if content else None
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def rank_scores(order: Sequence[int]) -> list[Scored]:
    """Scores of document indices given best first: ``1 - rank / n``, in that order."""
    n = len(order)
    return [Scored(index=doc, score=1.0 - rank / n) for rank, doc in enumerate(order)]


def sliding_windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` slices a RankGPT pass ranks over ``n`` documents, back to front. Unlike
    RankGPT's loop, the last window always reaches index 0, so no head of the list is skipped."""
    spans = []
    end = n
    while True:
        start = max(0, end - window)
        spans.append((start, end))
        if start == 0:
            return spans
        end -= step


async def _gather_or_cancel(aws: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that cancels (and waits for) the rest when one fails, so no call keeps
    running for a request that has already failed."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class LLMBackend(Backend):
    """A chat model as a reranker, through the official ``openai`` SDK (``AsyncOpenAI``).

    Construction never fails for a missing key: the key is read from the configuration's file or
    environment variable on every call (so a rotated mounted secret is picked up), and a missing
    one raises ``BackendAuthError`` then. The SDK does not retry (``max_retries=0``): the fallback
    chain owns retries. At most ``max_concurrency`` calls of this backend are in flight at once,
    across all requests (pointwise fans out one call per document; listwise windows run one after
    another).
    """

    def __init__(self, name: str, config: LLMConfig) -> None:
        self.name = name
        self.config = config
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._client = openai.AsyncOpenAI(
            api_key=self._current_key,
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
        )

    async def answer(self, request: RankRequest) -> Answer:
        """Rank the documents with the model; ``long_documents`` is ignored: every document is cut
        to ``max_doc_chars`` characters, since windows of one long document would each cost a
        call."""
        query, documents = request.query, request.documents
        if not documents:
            return Answer([])
        self._key_or_raise()
        if self.config.mode == "listwise":
            scored = rank_scores(await self._listwise_order(query, documents))
        else:
            scored = await _gather_or_cancel(
                [self._grade(query, i, text) for i, text in enumerate(documents)]
            )
        return Answer(top_n_of(scored, request.top_n))

    async def close(self) -> None:
        await self._client.close()

    # -- listwise ------------------------------------------------------------------------------

    async def _listwise_order(self, query: str, documents: Sequence[str]) -> list[int]:
        """Document indices best first, after one sliding-window pass from the back to the front."""
        order = list(range(len(documents)))
        for start, end in sliding_windows(len(order), self.config.window_size, self.config.step):
            ids = order[start:end]
            if len(ids) < 2:
                continue  # nothing to order: no call
            permutation = await self._rank_window(query, [documents[i] for i in ids])
            order[start:end] = [ids[p] for p in permutation]
        return order

    async def _rank_window(self, query: str, documents: Sequence[str]) -> list[int]:
        """The model's permutation of one window; the window's own order when it gave none."""
        passages = [passage_text(d, self.config.max_doc_chars) for d in documents]
        content = await self._complete(LISTWISE_SYSTEM, listwise_prompt(query, passages))
        permutation = parse_ranking(content, len(passages))
        if permutation is None:
            log.warning(
                "%s: no ranking could be read from the model's answer; keeping the order of a "
                "window of %d documents",
                self.name,
                len(passages),
            )
            return list(range(len(passages)))
        return permutation

    # -- pointwise -----------------------------------------------------------------------------

    async def _grade(self, query: str, index: int, text: str) -> Scored:
        """One document's grade; an unreadable answer scores 0.0 with no raw score."""
        passage = passage_text(text, self.config.max_doc_chars)
        content = await self._complete(POINTWISE_SYSTEM, pointwise_prompt(query, passage))
        grade = parse_grade(content)
        if grade is None:
            log.warning("%s: no score could be read for document %d; it scores 0", self.name, index)
            return Scored(index=index, score=0.0)
        return Scored(index=index, score=clamp01(grade / 10.0), raw_score=grade)

    # -- the API call --------------------------------------------------------------------------

    async def _complete(self, system: str, user: str) -> str | None:
        """One JSON-mode chat completion at temperature 0; the first choice's text (None when the
        answer has none, e.g. a refusal). API failures raise the typed ``BackendError``s."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        async with self._slots:
            try:
                completion = await self._client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,
                    temperature=0,
                    response_format={"type": "json_object"},
                )
            except openai.APIError as exc:
                # from None: the SDK's exception may quote the key (a 401 does); it is not chained.
                raise self._typed_error(exc) from None
            except json.JSONDecodeError:
                raise malformed(self.name, "a response body that is not JSON") from None
        if not isinstance(completion, ChatCompletion):
            raise malformed(self.name, "a response that is not a chat completion")
        if not completion.choices:
            return None
        return completion.choices[0].message.content

    def _typed_error(self, exc: openai.APIError) -> BackendError:
        """The typed error for an SDK exception; vendor text is quoted only with the key removed."""
        if isinstance(exc, openai.APITimeoutError):
            return timed_out(self.name, self.config.timeout_s)
        if isinstance(exc, openai.APIConnectionError):
            return unreachable(self.name, exc, self.config.api_key())
        if isinstance(exc, openai.APIStatusError):
            return status_error(exc.status_code, self.name, exc.body, "message", self.config.api_key())
        return malformed(self.name, "an answer the SDK could not read")

    # -- the key -------------------------------------------------------------------------------

    def _key_or_raise(self) -> str:
        key = self.config.api_key()
        if key is None:
            raise BackendAuthError(
                f"{self.name}: no API key (set {self.config.api_key_env})", backend=self.name
            )
        return key.get_secret_value()

    async def _current_key(self) -> str:
        """The SDK's key provider: asked before every request."""
        return self._key_or_raise()
