"""The service: its backends, routes (fallback chains), limits, auth and Router; and loading it
from a YAML file or the ``args`` of the Serve application."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator

from rerank_core.config.api import CohereConfig, JinaConfig, LLMConfig, VoyageConfig
from rerank_core.config.base import ConfigError, CustomResources, StrictModel, read_keys
from rerank_core.config.local import BiEncoderConfig, CausalLMConfig, CrossEncoderConfig
from rerank_core.config.tenants import QuotaStoreConfig, TenantConfig

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


class BreakerConfig(StrictModel):
    """Open after ``failures`` consecutive failures for ``reset_s`` seconds, then let one probe in."""

    failures: int = Field(5, ge=1)
    """Consecutive failures (timeouts, 5xx, unreachable; not refusals for overload) that open
    the breaker."""
    reset_s: float = Field(30.0, gt=0)
    """Seconds the breaker stays open before it lets one probe through."""


class RouteSettings(StrictModel):
    """How a chain tries its backends (a route's settings, and those of a request that names one
    backend directly)."""

    timeout_s: float = Field(10.0, gt=0)
    """Per-attempt deadline for each backend; for a local model whose ``serving.pairs_per_s`` is
    set, the ceiling of its work-bound deadline (``rerank_core.attempts.attempt_timeout``)."""
    min_timeout_s: float = Field(2.0, gt=0)
    """The floor of a local model's work-bound attempt deadline. 2 s: a small request's proxy
    hop, batch wait and forward pass take tenths of a second on a CPU, so 2 s leaves room for a
    busy moment, yet a request sent to a replica on a lost node is retried within seconds."""
    attempt_slack: float = Field(3.0, ge=1)
    """A local model's attempt may take this many times its expected time (the pairs ahead of it
    and its own at the model's rate) before it counts as lost. 3: rates vary with document
    length and batch company; a healthy but slow attempt given up would be retried, doubling its
    work."""
    hedge_after: float | None = Field(None, gt=0, lt=1)
    """Fraction of an attempt's deadline after which a second attempt of the same backend is
    sent while the first still runs, the first answer winning (The Tail at Scale's hedged
    requests). None (the default): no hedge, since on busy replicas it doubles the work of
    exactly the requests that are slow because the replicas are busy, and a lost replica is
    already retried at the attempt deadline. Worth it with several replicas and capacity to
    spare."""
    retries: int = Field(1, ge=0)
    """Retries of one backend on retryable errors before moving on."""
    backoff_s: float = Field(0.05, ge=0)
    """Seconds before the first retry of a backend, doubled for each further one."""
    last_resort: bool = True
    """When every backend fails: answer in the original order, marked degraded (True), or fail
    (False)."""


class RouteConfig(RouteSettings):
    """A named fallback chain: backends tried in order."""

    backends: list[str] = Field(min_length=1)
    """Backend names, tried in this order."""


class LimitsConfig(StrictModel):
    """Input limits; every request over one gets a 4xx naming the field and the limit."""

    max_documents: int = Field(2000, ge=1)
    """Documents in one request (and the most ``top_n`` can be)."""
    max_document_chars: int = Field(100_000, ge=1)
    """Characters in one document."""
    max_request_chars: int = Field(4_000_000, ge=1)
    """Characters in the query and all documents together."""
    max_query_chars: int = Field(10_000, ge=1)
    """Characters in the query."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Bytes of a request body, chunked bodies included; past it the answer is 413."""
    request_timeout_s: float = Field(60.0, gt=0)
    """Overall deadline of one request, fallbacks included."""


class AuthConfig(StrictModel):
    """Bearer keys for this service. Off by default; keys come from the environment or a file."""

    enabled: bool = False
    """Require ``Authorization: Bearer <key>`` on the rerank routes, ``/v1/models`` and
    ``/v1/stats`` (``/health`` stays open): a key of the ``default`` tenant (below) or of one of
    ``tenants``."""
    api_keys_env: str = "RERANK_API_KEYS"
    """Comma-separated keys in this environment variable ..."""
    api_keys_file: str | None = None
    """... and/or one key a line in this (mounted secret) file. These keys belong to the tenant
    ``default``: unlimited and interactive unless ``tenants`` configures it."""

    def load_keys(self) -> list[SecretStr]:
        """Every configured key (empty when none is set)."""
        return read_keys(self.api_keys_env, self.api_keys_file)


class RouterConfig(StrictModel):
    """How the HTTP router deployment is served (it does little compute: a fraction of a CPU)."""

    num_cpus: float = Field(0.25, ge=0)
    """CPUs Ray reserves for each Router replica."""
    resources: CustomResources = Field(default_factory=dict)
    """Custom Ray resources each Router replica needs, e.g. ``{head_node: 0.01}`` to keep the
    Router on the head node, which a cluster does not lose with a worker."""
    num_replicas: int = Field(1, ge=1)
    """Router replicas; two on different nodes keep the way in through a lost node."""
    max_ongoing_requests: int = Field(256, ge=1)
    """Requests one Router replica works on at once (most of them wait on a model)."""
    max_queued_requests: int | None = Field(512, ge=1)
    """Requests waiting for a router replica beyond ``max_ongoing_requests``; past it Serve's
    proxy answers 429. None: no bound."""
    retry_after_s: float = Field(1.0, gt=0)
    """Seconds a 429 answer's ``Retry-After`` tells the client to wait (rounded up to whole
    seconds)."""
    refusal_hold_s: float = Field(3.0, ge=0)
    """Seconds a refusal for overload (429) is held before it is sent; its ``Retry-After`` then
    says what is left of the wait (0: come back now). A client that resends at once is paced to
    one attempt a hold, so a storm of refused resends leaves the CPU to the models: each refusal
    costs the proxy and the Router a request's parsing, which through Ray's Python proxy took
    half the goodput at a 1 s hold (docs/operations-faults.md). A client that honours
    ``Retry-After`` waits no longer than it was told. 0: refuse at once."""
    max_queue_wait_s: float | None = Field(10.0, gt=0)
    """Seconds of expected wait (the pairs ahead on a local model and the request's own, at its
    measured rate) past which the Router refuses a request at once, before any hop, with 429 and
    the ``Retry-After`` the queue needs; never more than 80 % of ``limits.request_timeout_s``.
    A few seconds of queue keep a model busy while refused clients come back; more only makes
    the admitted wait. None: 80 % of the request deadline."""
    health_timeout_s: float = Field(5.0, gt=0)
    """Seconds ``/health`` waits for each model replica to answer before calling it unavailable."""


class ServiceConfig(StrictModel):
    """The whole service: named backends, named routes, the default route, limits, auth."""

    backends: dict[str, BackendConfig]
    """Named backends; ``type`` picks the kind (``cross_encoder``, ``bi_encoder``,
    ``causal_lm``, ``cohere``, ``jina``, ``voyage``, ``llm``)."""
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    """Named routes (fallback chains), chosen by a request's ``model``."""
    default_route: str | None = None
    """The route (or backend) of a request without ``model``; None: the first route, or the first
    backend when there are no routes."""
    limits: LimitsConfig = LimitsConfig()
    """Input limits and the request deadline."""
    auth: AuthConfig = AuthConfig()
    """The service's own bearer keys."""
    router: RouterConfig = RouterConfig()
    """How the Router deployment is served."""
    breaker: BreakerConfig = BreakerConfig()
    """The circuit breaker every backend gets."""
    direct_backend: RouteSettings = RouteSettings()
    """The settings of a request whose ``model`` names a backend rather than a route: that backend
    alone, tried with these."""
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    """Tenants by name: each API key's traffic class, quotas and routes (needs ``auth.enabled``).
    The keys of ``auth.api_keys_env`` / ``auth.api_keys_file`` belong to ``default``."""
    quota_store: QuotaStoreConfig = QuotaStoreConfig()
    """Where the Router's replicas count the tenants' quotas."""

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
        self._tenants_resolve()
        return self

    def _tenants_resolve(self) -> None:
        if self.tenants and not self.auth.enabled:
            raise ValueError("tenants: a tenant is known by its key; set auth.enabled: true")
        names = set(self.route_names())
        owner: dict[str, str] = {}
        for tenant, cfg in self.tenants.items():
            for r in cfg.routes or []:
                if r not in names:
                    raise ValueError(
                        f"tenants.{tenant}.routes: unknown route or backend {r!r}; "
                        f"served: {', '.join(self.route_names())}"
                    )
            for digest in cfg.key_sha256:
                if digest in owner:
                    raise ValueError(
                        f"tenants.{tenant}.key_sha256: a key of tenant {owner[digest]!r} too "
                        "(each key belongs to one tenant)"
                    )
                owner[digest] = tenant

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


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "invalid configuration: " + "; ".join(lines)


def read_yaml(path: str | Path) -> Any:
    """The content of the YAML file at ``path``; a file that cannot be read or parsed raises
    ``ConfigError`` with a one-line message naming the file and the problem (and where it lies)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"configuration {path} is not valid YAML: {problem}{where}") from None


def load_config(source: dict[str, Any] | str | Path) -> ServiceConfig:
    """Validate a dict, or read and validate a YAML file, raising ``ConfigError`` naming the field."""
    data = read_yaml(source) if isinstance(source, str | Path) else source
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a mapping")
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_app_args(args: dict[str, Any]) -> ServiceConfig:
    """The service configuration a Serve application's ``args`` hold: inline under ``service``
    (a mapping) or in the YAML file named by ``config_file``."""
    if not isinstance(args, dict):
        raise ConfigError("the application's args must be a mapping")
    if "service" in args:
        return load_config(args["service"])
    if "config_file" in args:
        return load_config(args["config_file"])
    raise ConfigError("the application's args need service (a mapping) or config_file (a path)")
