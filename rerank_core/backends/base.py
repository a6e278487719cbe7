"""The one interface every reranker implements."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rerank_core.backends.runtime_errors import typed_runtime_error
from rerank_core.config import (
    BiEncoderConfig,
    CausalLMConfig,
    ConfigError,
    CrossEncoderConfig,
    is_local_path,
)
from rerank_core.errors import BackendUnavailable, InvalidRequest
from rerank_core.types import Scored, top_n_of
from rerank_core.windows import best_per_document, expand_documents

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from rerank_core.backends.runtimes import ExportedModel

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
_Model = TypeVar("_Model")

#: An async scorer of (query, text) pairs returning raw scores in input order.
PairScorer = Callable[[Sequence[tuple[str, str]]], Awaitable[list[float]]]


@dataclass
class PreparedPairs:
    """Pairs made ready for the model by ``LocalModelBackend.prepare``: ``count`` pairs in
    ``batches``, each (indices into the pairs, the model's input for them)."""

    count: int
    batches: list[tuple[list[int], Any]]


#: ``batch_cost_tokens`` when the config leaves it out. CPU: measured with the benchmark
#: cross-encoder on TREC DL 2020 passages (docs/benchmarks.md, "Cutting batches where padding
#: costs more than a pass"). GPU: a pass's fixed cost is its kernel launches, worth thousands of
#: tokens of compute; an estimate, not measured yet.
DEFAULT_BATCH_COST_TOKENS = {"cpu": 64, "cuda": 2048}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16; Linux's flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class Backend(abc.ABC):
    """A reranker. ``rerank`` returns scored indices into ``documents``, best first.

    ``top_n`` None means all; a ``top_n`` larger than the list means all. A backend that cannot answer
    raises a ``rerank_core.errors.BackendError`` subclass, never anything else on purpose.
    """

    #: Name used in responses, logs and metrics; set from configuration.
    name: str

    @abc.abstractmethod
    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: str | None = None,
    ) -> list[Scored]:
        """Score ``documents`` against ``query`` and return the best ``top_n``, best first.

        ``long_documents`` ("truncate" or "window") overrides the configured handling of documents
        longer than the model's input; backends that truncate on the vendor's side ignore it.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release clients or connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LocalModelBackend(Backend):
    """A model that scores (query, document) pairs in this process.

    Subclasses load their model with ``load_model`` and implement ``score_pairs`` (raw scores, input
    order; ``run_batched`` does the shared sort-by-length batching under the token budget) and
    ``to_relevance`` (raw into [0, 1]). ``score_pairs`` may be called from several threads at once,
    and runs one at a time.

    Scoring is two stages, so that a server can overlap them: ``prepare`` (tokenize each pair once,
    sort by length, cut under the token budget, pad) on a thread of its own, and ``forward`` (the
    model's passes) on the model's thread; ``score_pairs_async`` runs one after the other, and a
    Serve deployment runs the ``prepare`` of one batch while the ``forward`` of the previous one
    runs. By default ``prepare`` only wraps the pairs and ``forward`` calls ``score_pairs``; a
    subclass that tokenizes overrides both (see ``token_pair_batches`` and ``forward_batches``).

    Long documents: "truncate" leaves them to the tokenizer, which cuts each pair to the model's
    max length; "window" scores overlapping character windows (``rerank_core.windows``) and keeps
    each document's best. That expansion happens in ``rerank_via``, before pairs reach
    ``score_pairs``, so windows of many requests share the same batches.
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
        #: bfloat16 compute on CPU (``cpu_dtype``): torch under autocast, OpenVINO by its hint.
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
        #: The model's export in its onnx/openvino runtime; None with the torch runtime.
        self.exported: ExportedModel | None = None
        # One forward pass at a time: tokenizers and CUDA streams are not safe to share between
        # threads, and a second concurrent batch would only double peak memory.
        self._lock = threading.Lock()
        # Every forward pass runs on this one thread. Torch keeps an OpenMP pool per calling
        # thread, and idle pools spin: passes spread over asyncio's default executor left several
        # pools spinning against each other and ran a 2-core CPU many times slower.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-model")
        # Tokenizing runs beside the forward pass (tokenizers release the GIL); it builds numpy
        # arrays only, so this thread never starts an OpenMP pool of its own.
        self._prepare_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-pre")
        #: Seconds spent in ``forward`` through ``forward_async`` (the model's busy time).
        self.forward_s = 0.0

    @abc.abstractmethod
    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Raw scores of ``pairs``, in input order. Blocking: run it off the event loop."""

    @abc.abstractmethod
    def to_relevance(self, raw: float) -> float:
        """Map one raw score into [0, 1]."""

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

    async def rerank_via(
        self,
        score: PairScorer,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: str | None = None,
    ) -> list[Scored]:
        """Rank ``documents`` with ``score`` doing the model work: a Serve deployment passes its
        cross-request batcher, ``rerank`` passes ``score_pairs`` on a worker thread. A windowed
        document's raw score is its best window's."""
        if not documents:
            return []
        texts, owners = self.windows_for(documents, long_documents)
        raw = await score([(query, text) for text in texts])
        return top_n_of(self.scored(best_per_document(raw, owners, len(documents))), top_n)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: str | None = None,
    ) -> list[Scored]:
        return await self.rerank_via(
            self.score_pairs_async, query, documents, top_n, long_documents=long_documents
        )

    def prepare(self, pairs: Sequence[tuple[str, str]]) -> PreparedPairs:
        """The first stage of scoring ``pairs``. Blocking, and safe beside a running ``forward``."""
        return PreparedPairs(len(pairs), [(list(range(len(pairs))), list(pairs))])

    def forward(self, prepared: PreparedPairs) -> list[float]:
        """The second stage: raw scores of the prepared pairs, in their input order. Blocking."""
        return [s for _, pairs in prepared.batches for s in self.score_pairs(pairs)]

    async def prepare_async(self, pairs: Sequence[tuple[str, str]]) -> PreparedPairs:
        """``prepare`` on its own thread, leaving the event loop and the model's thread free."""
        return await asyncio.get_running_loop().run_in_executor(
            self._prepare_thread, self.prepare, pairs
        )

    async def forward_async(self, prepared: PreparedPairs) -> list[float]:
        """``forward`` on the model's own thread, leaving the event loop free; its time is added
        to ``forward_s``."""
        return await asyncio.get_running_loop().run_in_executor(
            self._model_thread, self._timed_forward, prepared
        )

    def _timed_forward(self, prepared: PreparedPairs) -> list[float]:
        started = time.perf_counter()
        try:
            return self.forward(prepared)
        finally:
            self.forward_s += time.perf_counter() - started

    async def score_pairs_async(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Raw scores of ``pairs``: ``prepare`` then ``forward``, each on its own thread."""
        return await self.forward_async(await self.prepare_async(pairs))

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

    def _resolve_device(self, requested: str) -> str:
        import torch

        if requested == "auto":
            # The exported runtimes run on CPU; the configuration's comment says so.
            on_cuda = torch.cuda.is_available() and self.config.runtime == "torch"
            return "cuda" if on_cuda else "cpu"
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"{self.name}: device {requested!r} is configured but CUDA is not available",
                backend=self.name,
            )
        return requested

    def load_model(self, load: Callable[[], _Model], *, half: bool = True) -> _Model:
        """Run ``load`` (which builds the model on ``self.device``), then set it to inference and,
        with ``half``, to float16 when the device is CUDA and ``fp16`` is set (``half`` False: the
        loader chose the precision). A model that cannot be found or read raises
        ``BackendUnavailable`` naming it."""
        try:
            model: Any = load()
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"cannot load model {self.config.model!r} for {self.name}: {exc}",
                backend=self.name,
                field="model",
            ) from exc
        if half and self.config.fp16 and self.device.startswith("cuda"):
            model.half()
        model.eval()
        return model

    @staticmethod
    def token_lengths(
        tokenizer: PreTrainedTokenizerBase,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
    ) -> list[int]:
        """Tokens of each text (or text pair), special tokens included, after the tokenizer's own
        truncation to its max length: the width each takes in a padded batch."""
        encoded = tokenizer(
            list(texts),
            list(text_pairs) if text_pairs is not None else None,
            truncation=True,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    @staticmethod
    def length_batches(
        lengths: Sequence[int], max_items: int, max_tokens: int, batch_cost_tokens: int
    ) -> list[list[int]]:
        """Indices into ``lengths`` sorted longest first and cut into batches of at most
        ``max_items`` whose padded size (items x longest length) is at most ``max_tokens``, at
        the cuts that minimise the padded tokens of all batches plus ``batch_cost_tokens`` for
        each batch (what one more forward pass costs, in tokens of compute). A batch of similar
        lengths wastes little on padding: ten TREC passages of one query padded to the longest as
        one batch took a third longer on CPU than cut into two or three. An item longer than
        ``max_tokens`` on its own is a batch of one: it cannot be split."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        widths = [lengths[i] for i in order]
        n = len(order)
        # cost[j]: the least cost of the first j items; start[j]: where its last batch begins.
        # Longest first, so a batch's padded width is its first item's length.
        cost = [0] * (n + 1)
        start = [0] * (n + 1)
        for j in range(1, n + 1):
            best, best_i = -1, j - 1
            for i in range(j - 1, max(j - max_items, 0) - 1, -1):
                size = (j - i) * widths[i]
                if size > max_tokens and i < j - 1:
                    break  # wider and longer from here on: over the budget for every earlier i
                total = cost[i] + size + batch_cost_tokens
                if best < 0 or total <= best:  # on a tie, the fewer passes
                    best, best_i = total, i
            cost[j], start[j] = best, best_i
        batches: list[list[int]] = []
        j = n
        while j > 0:
            batches.append(order[start[j] : j])
            j = start[j]
        batches.reverse()
        return batches

    def token_pair_batches(
        self, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], max_length: int
    ) -> PreparedPairs:
        """``pairs`` tokenized once (truncated to ``max_length`` tokens, longest first), grouped
        by ``length_batches`` under ``batch_size`` and ``max_tokens_per_batch``, each batch padded
        to its longest pair as numpy arrays."""
        if not pairs:
            return PreparedPairs(0, [])
        encoded = tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation="longest_first",
            max_length=max_length,
        )
        lengths = [len(ids) for ids in encoded["input_ids"]]
        batches = []
        for batch in self.length_batches(
            lengths,
            self.config.batch_size,
            self.config.max_tokens_per_batch,
            self.batch_cost_tokens,
        ):
            columns = {key: [encoded[key][i] for i in batch] for key in encoded}
            batches.append((batch, tokenizer.pad(columns, return_tensors="np")))
        return PreparedPairs(len(pairs), batches)

    def forward_batches(
        self, prepared: PreparedPairs, run: Callable[[Any], Sequence[float]]
    ) -> list[float]:
        """``run`` over each prepared batch, one at a time under the model lock and
        ``torch.inference_mode``; raw scores in input order. A runtime failure of the model (CUDA
        out of memory, a device error) raises ``BackendUnavailable``."""
        import torch

        results = [0.0] * prepared.count
        with self._lock, torch.inference_mode(), self._autocast():
            for batch, inputs in prepared.batches:
                outputs = self._model_pass(run, inputs, len(batch))
                for i, output in zip(batch, outputs, strict=True):
                    results[i] = float(output)
        return results

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast for a torch model on CPU with ``cpu_dtype: bfloat16``; else nothing
        (an exported model gets its precision from its runtime)."""
        if not self.cpu_bf16 or self.exported is not None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def _model_pass(self, run: Callable[[_Item], _Result], inputs: _Item, size: int) -> _Result:
        try:
            return run(inputs)
        except Exception as exc:  # sorted into typed errors; anything else re-raised as itself
            typed = typed_runtime_error(self.name, exc, size)
            if typed is None:
                raise
            raise typed from exc

    def run_batched(
        self,
        items: Sequence[_Item],
        lengths: Sequence[int],
        run: Callable[[list[_Item]], Sequence[_Result]],
    ) -> list[_Result]:
        """``run`` over length-sorted batches of ``items`` (at most ``batch_size`` items and
        ``max_tokens_per_batch`` padded tokens each), one batch at a time under the model lock and
        ``torch.inference_mode``; results in input order. A runtime failure of the model (CUDA
        out of memory, a device error) raises ``BackendUnavailable``."""
        import torch

        results: list[_Result | None] = [None] * len(items)
        batches = self.length_batches(
            lengths,
            self.config.batch_size,
            self.config.max_tokens_per_batch,
            self.batch_cost_tokens,
        )
        with self._lock, torch.inference_mode(), self._autocast():
            for batch in batches:
                outputs = self._model_pass(run, [items[i] for i in batch], len(batch))
                for i, output in zip(batch, outputs, strict=True):
                    results[i] = output
        return cast("list[_Result]", results)
