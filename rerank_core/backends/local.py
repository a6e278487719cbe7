"""The scoring engine every local model family runs in.

A family (cross-encoder, bi-encoder, causal LM) implements three steps, as Infinity's
``encode_pre / encode_core / encode_post`` do: ``tokenize`` pairs into items of token ids (with
``collate`` padding a batch of them), ``forward`` a padded batch into one output per item, and
``to_relevance`` (after ``pair_scores``, for a family whose items are not the pairs) to map a raw
score into [0, 1]. ``LocalModelBackend`` owns everything else, once for every family: windows for
long documents, the score cache, the token budget and padding-aware cuts, tokenizing on a thread of
its own while the model runs on another, top_n, and the request's timing.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rerank_core.backends.base import Backend
from rerank_core.backends.batching import (
    DEFAULT_BATCH_COST_TOKENS,
    SHAPE_MULTIPLE,
    Prepared,
    Tokenized,
    length_batches,
    round_up,
)
from rerank_core.backends.exports import cpu_flags
from rerank_core.backends.runtime_errors import typed_runtime_error
from rerank_core.config import (
    BiEncoderConfig,
    CausalLMConfig,
    ConfigError,
    CrossEncoderConfig,
    is_local_path,
)
from rerank_core.errors import BackendUnavailable, InvalidRequest
from rerank_core.score_cache import ScoreCache, model_fingerprint
from rerank_core.types import Answer, Lane, ModelTiming, RankRequest, Scored, top_n_of
from rerank_core.windows import best_per_document, expand_documents

logger = logging.getLogger(__name__)

_Model = TypeVar("_Model")

Pairs = Sequence[tuple[str, str]]


@dataclass
class ScoredPairs:
    """Raw scores of pairs in their order, and when the first batch that scored them started and
    the last one ended (``time.perf_counter``)."""

    raw: list[float]
    started: float
    ended: float


#: Scores pairs for ``LocalModelBackend.answer``, given the request's lane: in-process by default,
#: a Serve deployment's cross-request batcher when one serves the model.
PairScorer = Callable[[list[tuple[str, str]], Lane], Awaitable[ScoredPairs]]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16; Linux's flags)."""
    flags = cpu_flags() or frozenset()
    return "amx_bf16" in flags or "avx512_bf16" in flags


class LocalModelBackend(Backend):
    """A model that scores (query, document) pairs in this process, through the engine's one path:
    ``answer`` -> windows -> score cache -> ``pair_scorer`` (``prepare`` on the tokenizer thread,
    ``forward`` on the model thread) -> relevance -> top_n.

    Subclasses load their model and implement ``tokenize``, ``collate``, ``forward_batch`` and
    ``to_relevance`` (and ``pair_scores`` where their items are not the pairs).

    Long documents: "truncate" leaves them to the tokenizer, which cuts each pair to the model's
    max length; "window" scores overlapping character windows (``rerank_core.windows``) and keeps
    each document's best, before the pairs reach the scorer, so windows of many requests share the
    same batches.
    """

    #: Where the model runs: "cpu", "cuda", "cuda:1", ...
    device: str

    def __init__(
        self, name: str, config: CrossEncoderConfig | BiEncoderConfig | CausalLMConfig
    ) -> None:
        self.name = name
        self.config = config
        # Checked here, where the replica runs, not where the application was built: on a
        # cluster the directory must exist on the node that loads the model.
        if is_local_path(config.model) and not Path(config.model).expanduser().is_dir():
            raise ConfigError(
                f"backends.{name}.model: the directory {config.model!r} does not exist",
                field="model",
            )
        self.device = self._resolve_device(config.device)
        #: bfloat16 on CPU (``cpu_dtype``): torch weights loaded as such, OpenVINO by its hint.
        self.cpu_bf16 = config.cpu_dtype == "bfloat16" and self.device == "cpu"
        if self.cpu_bf16 and not cpu_has_bf16():
            logger.warning(
                "%s: cpu_dtype bfloat16 on a CPU without AMX or AVX512-BF16 is emulated and "
                "slower than float32",
                name,
            )
        #: What one more forward pass costs, in padded tokens (``length_batches``).
        self.batch_cost_tokens = (
            config.batch_cost_tokens
            if config.batch_cost_tokens is not None
            else DEFAULT_BATCH_COST_TOKENS["cpu" if self.device == "cpu" else "cuda"]
        )
        #: Padded widths are multiples of this (``SHAPE_MULTIPLE`` where kernels are built per
        #: shape: OpenVINO, torch in bfloat16 on CPU; else 1, exact widths).
        self.shape_multiple = (
            SHAPE_MULTIPLE if config.runtime == "openvino" or self.cpu_bf16 else 1
        )
        #: The model's export in its onnx/openvino runtime; None with the torch runtime.
        self.exported: Any = None
        #: Raw scores by (model, query, document); shared by every request of this backend.
        self.cache = ScoreCache(
            model_fingerprint(config), int(config.serving.score_cache_mib * 2**20)
        )
        #: How ``answer`` scores the pairs it could not answer from the cache.
        self.pair_scorer: PairScorer = self.score_pairs_timed
        # One torch forward pass at a time: CUDA streams are not safe to share between threads,
        # and a second concurrent batch would only double peak memory.
        self._lock = threading.Lock()
        # Tokenizing runs beside the forward pass (tokenizers release the GIL); it builds numpy
        # arrays only, so this thread never starts an OpenMP pool of its own.
        self._prepare_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-pre")
        #: Seconds during which a ``forward`` ran (the model's busy time).
        self.forward_s = 0.0
        self._forwards = 0
        self._busy_since = 0.0
        self._busy_lock = threading.Lock()

    # The family's steps.

    @abc.abstractmethod
    def tokenize(self, pairs: Pairs) -> Tokenized:
        """The pairs as items of token ids, each item within the model's input length."""

    @abc.abstractmethod
    def collate(self, tokenized: Tokenized, items: list[int]) -> Any:
        """The model's padded input for ``items`` (indices into ``tokenized``)."""

    @abc.abstractmethod
    def forward_batch(self, features: Any) -> Sequence[Any]:
        """One forward pass: one output per item of the batch. Runs on the model's thread."""

    def pair_scores(self, tokenized: Tokenized, outputs: list[Any]) -> list[float]:
        """Each pair's raw score from its items' outputs: the outputs themselves where the items
        are the pairs."""
        return [float(o) for o in outputs]

    @abc.abstractmethod
    def to_relevance(self, raw: float) -> float:
        """Map one raw score into [0, 1]."""

    # The engine.

    async def answer(self, request: RankRequest) -> Answer:
        """Rank the request's documents; a windowed document's raw score is its best window's."""
        timing = ModelTiming()
        if not request.documents:
            return Answer([], timing)
        texts, owners = self.windows_for(request.documents, request.long_documents)
        pairs = [(request.query, text) for text in texts]
        raw = await self._raw_scores(pairs, request.lane, timing)
        best = best_per_document(raw, owners, len(request.documents))
        return Answer(top_n_of(self.scored(best), request.top_n), timing)

    async def _raw_scores(
        self, pairs: list[tuple[str, str]], lane: Lane, timing: ModelTiming
    ) -> list[float]:
        """Raw scores of ``pairs``: from the cache where it holds them, the rest through
        ``pair_scorer`` in ``lane`` (each distinct missing pair scored once); ``timing`` filled
        in."""
        arrived = time.perf_counter()
        if not self.cache.max_entries:
            return self._timed(await self.pair_scorer(pairs, lane), arrived, timing, len(pairs))
        found, keys = self.cache.lookup(pairs)
        missing = list({keys[i]: pairs[i] for i, s in enumerate(found) if s is None}.items())
        timing.cached = len(pairs) - sum(1 for s in found if s is None)
        if not missing:
            return [s for s in found if s is not None]
        scored = await self.pair_scorer([pair for _, pair in missing], lane)
        raw = self._timed(scored, arrived, timing, len(missing))
        self.cache.store([key for key, _ in missing], raw)
        fresh = {key: score for (key, _), score in zip(missing, raw, strict=True)}
        return [fresh[key] if s is None else s for s, key in zip(found, keys, strict=True)]

    @staticmethod
    def _timed(
        scored: ScoredPairs, arrived: float, timing: ModelTiming, pairs: int
    ) -> list[float]:
        timing.queue_s = max(0.0, scored.started - arrived)
        timing.model_s = scored.ended - scored.started
        timing.pairs = pairs
        return scored.raw

    def scored(self, raw_scores: Sequence[float]) -> list[Scored]:
        """Wrap raw scores (input order) into ``Scored`` items."""
        return [
            Scored(index=i, score=self.to_relevance(r), raw_score=float(r))
            for i, r in enumerate(raw_scores)
        ]

    def windows_for(
        self, documents: Sequence[str], long_documents: str | None = None
    ) -> tuple[list[str], list[int]]:
        """The texts to score for ``documents`` and each text's document index: the documents
        themselves, or their windows when ``long_documents`` (default: the configured mode) is
        "window"."""
        mode = long_documents or self.config.long_documents
        if mode == "window":
            return expand_documents(
                documents, self.config.window_chars, self.config.window_overlap_chars
            )
        if mode != "truncate":
            raise InvalidRequest(
                f"long_documents must be 'truncate' or 'window', not {mode!r}",
                field="long_documents",
            )
        return list(documents), list(range(len(documents)))

    def prepare(self, pairs: Pairs) -> Prepared:
        """The first stage: ``pairs`` tokenized once, cut by ``length_batches`` under
        ``batch_size`` and ``max_tokens_per_batch``, each batch collated. Blocking, and safe beside
        a running ``forward``."""
        tokenized = self.tokenize(pairs)
        prepared = Prepared(len(pairs), tokenized)
        if not pairs:
            return prepared
        multiple = self.shape_multiple
        for items in length_batches(
            [round_up(length, multiple) for length in tokenized.lengths]
            if multiple > 1
            else tokenized.lengths,
            self.config.batch_size,
            self.config.max_tokens_per_batch,
            self.batch_cost_tokens,
        ):
            prepared.batches.append((items, self.collate(tokenized, items)))
        return prepared

    @property
    def streams(self) -> int:
        """Forward passes the model runs at once: its runtime's streams (``streams`` in the
        config), 1 for torch."""
        return self.exported.streams if self.exported is not None else 1

    @functools.cached_property
    def _model_thread(self) -> ThreadPoolExecutor:
        """Where ``forward`` runs: one thread, or one per stream so that the next request's
        passes start while the last passes of this one finish. Torch keeps an OpenMP pool per
        calling thread, and idle pools spin against each other on a small CPU: torch's passes all
        run on this one thread."""
        return ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix=f"{self.name}-model")

    @functools.cached_property
    def _stream_threads(self) -> ThreadPoolExecutor:
        """With more than one stream, the passes of a ``forward``, one thread per stream."""
        return ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix=f"{self.name}-pass")

    def forward(self, prepared: Prepared) -> list[float]:
        """The second stage: raw scores of the prepared pairs, in their input order. Blocking.
        With one stream, one batch at a time under the model lock and ``torch.inference_mode``;
        with more, the batches spread over the streams. A runtime failure of the model (CUDA out
        of memory, a device error) raises ``BackendUnavailable``."""
        if not prepared.pairs:
            return []
        outputs: list[Any] = [None] * len(prepared.tokenized.lengths)
        if self.streams > 1:
            passes = self._stream_threads.map(self._pass, prepared.batches)
        else:
            with self._lock:
                passes = [self._pass(batch) for batch in prepared.batches]
        for items, outs in passes:
            for i, output in zip(items, outs, strict=True):
                outputs[i] = output
        return self.pair_scores(prepared.tokenized, outputs)

    def _pass(self, batch: tuple[list[int], Any]) -> tuple[list[int], Sequence[Any]]:
        import torch

        items, features = batch
        with torch.inference_mode():
            return items, self._model_pass(features, len(items))

    def _model_pass(self, features: Any, size: int) -> Sequence[Any]:
        try:
            return self.forward_batch(features)
        except Exception as exc:  # sorted into typed errors; anything else re-raised as itself
            typed = typed_runtime_error(self.name, exc, size)
            if typed is None:
                raise
            raise typed from exc

    def score_pairs(self, pairs: Pairs) -> list[float]:
        """Raw scores of ``pairs`` in input order: ``prepare`` then ``forward``, on this thread."""
        return self.forward(self.prepare(pairs))

    async def prepare_async(self, pairs: Pairs) -> Prepared:
        """``prepare`` on the tokenizer's thread, leaving the event loop and the model free."""
        return await asyncio.get_running_loop().run_in_executor(
            self._prepare_thread, self.prepare, pairs
        )

    async def forward_async(self, prepared: Prepared) -> list[float]:
        """``forward`` on the model's thread; the time any forward runs is added to
        ``forward_s``."""
        return await asyncio.get_running_loop().run_in_executor(
            self._model_thread, self._timed_forward, prepared
        )

    def _timed_forward(self, prepared: Prepared) -> list[float]:
        with self._busy_lock:
            if not self._forwards:
                self._busy_since = time.perf_counter()
            self._forwards += 1
        try:
            return self.forward(prepared)
        finally:
            with self._busy_lock:
                self._forwards -= 1
                if not self._forwards:
                    self.forward_s += time.perf_counter() - self._busy_since

    async def score_pairs_timed(
        self, pairs: list[tuple[str, str]], lane: Lane = "interactive"
    ) -> ScoredPairs:
        """The in-process scorer: ``pairs`` in chunks of ``serving.max_batch_size``, the next chunk
        tokenized while the model runs the current one. ``lane`` changes nothing here: each caller
        runs its own chunks, with no queue shared between requests to order."""
        size = self.config.serving.max_batch_size
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)] or [[]]
        raw: list[float] = []
        started = time.perf_counter()
        ahead = asyncio.ensure_future(self.prepare_async(chunks[0]))
        for i in range(len(chunks)):
            prepared = await ahead
            if i + 1 < len(chunks):
                ahead = asyncio.ensure_future(self.prepare_async(chunks[i + 1]))
            raw += await self.forward_async(prepared)
        return ScoredPairs(raw, started, time.perf_counter())

    async def close(self) -> None:
        """Stop the engine's threads (``shutdown``)."""
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the tokenizer's and the model's threads: a pass already running finishes, queued
        work is dropped, and the backend scores nothing after. Safe to call more than once."""
        # The model's pools exist once a pass asked for them (cached properties): none is made here.
        pools = [self._prepare_thread] + [
            self.__dict__[name] for name in ("_model_thread", "_stream_threads") if name in self.__dict__
        ]
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)

    async def health_check_async(self) -> None:
        """``health_check`` on the model's own thread."""
        await asyncio.get_running_loop().run_in_executor(self._model_thread, self.health_check)

    def health_check(self) -> None:
        """Score one tiny pair; raise ``BackendUnavailable`` when the model cannot."""
        raw = self.score_pairs([("health check", "a short document")])
        if len(raw) != 1 or not math.isfinite(raw[0]):
            raise BackendUnavailable(
                f"model {self.name} answered {raw!r} to the health check", backend=self.name
            )

    # Loading.

    def measure_batch_cost(self, repeats: int = 5) -> int:
        """Set ``batch_cost_tokens`` from this model on this machine (what ``build_backend`` does
        when the configuration leaves it out): the time of a pass of one short item against a pass
        of a budget of long ones (about 2,048 padded tokens), each the median of ``repeats`` after a
        warm-up, gives a pass's fixed time and a token's; their ratio is the cost. A model whose
        passes are near-free next to their fixed cost (a small model, a GPU) is cut into few,
        large passes; a compute-bound one where padding costs more. Runs on the model's thread."""
        cost = self._model_thread.submit(self._measured_batch_cost, repeats).result()
        self.batch_cost_tokens = cost
        logger.info("%s: batch_cost_tokens measured at %d", self.name, cost)
        return cost

    def _measured_batch_cost(self, repeats: int) -> int:
        import torch

        def timed(pairs: Pairs) -> tuple[float, int]:
            tokenized = self.tokenize(pairs)
            items = list(range(len(tokenized.lengths)))
            features = self.collate(tokenized, items)
            padded = len(items) * round_up(max(tokenized.lengths), self.shape_multiple)
            times = []
            with self._lock, torch.inference_mode():
                for _ in range(repeats + 2):  # the first passes of a shape build its kernels
                    started = time.perf_counter()
                    self._model_pass(features, len(items))
                    times.append(time.perf_counter() - started)
            return statistics.median(times[2:]), padded

        one_s, one_tokens = timed([("a query", "a document")])
        long_document = " ".join(["a longer document of many words"] * 40)
        width = max(self.tokenize([("a query", long_document)]).lengths)
        rows = max(1, min(self.config.batch_size, 2048 // width))
        # Distinct documents: a bi-encoder tokenizes each distinct text once.
        many_s, many_tokens = timed([("a query", f"{i} {long_document}") for i in range(rows)])
        if many_tokens <= one_tokens or many_s <= one_s:
            return self.config.max_tokens_per_batch  # the pass's own cost hides the tokens'
        per_token = (many_s - one_s) / (many_tokens - one_tokens)
        fixed = max(0.0, one_s - per_token * one_tokens)
        return min(self.config.max_tokens_per_batch, round(fixed / per_token))

    def _resolve_device(self, requested: str) -> str:
        import torch

        if requested == "auto":
            # The exported runtimes run on CPU; the configuration's comment says so.
            on_cuda = torch.cuda.is_available() and self.config.runtime == "torch"
            return "cuda" if on_cuda else "cpu"
        if requested.startswith("cuda") and not torch.cuda.is_available():
            # No retry or other replica on this node will find the device: the config is wrong
            # for where it runs.
            raise ConfigError(
                f"backends.{self.name}.device: {requested!r} is configured but CUDA is not "
                "available",
                field="device",
            )
        return requested

    def torch_dtype(self) -> Any:
        """The dtype the torch weights are loaded in: float16 or the configured half type on CUDA
        with ``fp16``, bfloat16 on CPU with ``cpu_dtype: bfloat16`` (torch runtime), else
        float32."""
        import torch

        if self.config.runtime != "torch":
            return torch.float32  # the export is made from float32 weights
        if self.device.startswith("cuda") and self.config.fp16:
            return getattr(torch, getattr(self.config, "gpu_dtype", "float16"))
        if self.cpu_bf16:
            return torch.bfloat16
        return torch.float32

    def load_model(self, load: Callable[[], _Model]) -> _Model:
        """Run ``load`` (which builds the model on ``self.device`` in ``torch_dtype``), then set
        it to inference. A model that cannot be found or read raises ``BackendUnavailable``
        naming it."""
        try:
            model: Any = load()
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"cannot load model {self.config.model!r} for {self.name}: {exc}",
                backend=self.name,
                field="model",
            ) from exc
        model.eval()
        return model
