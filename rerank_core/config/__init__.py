"""Configuration as data: backends, routes (fallback chains), limits, auth and tenants.

Loaded from a YAML file or a dict (the ``args`` of the Serve application), validated at start-up;
a bad field is reported by its path (``backends.cohere.timeout_s: ...``). Secrets are never part of
the configuration: a backend names the environment variable (or mounted file) that holds its key.

``base`` holds what every section shares, ``local`` the local models and how they are served,
``api`` the API backends, ``tenants`` the tenants and their quotas, ``service`` the whole service
and its loading; every public name is importable from here.
"""

from rerank_core.config.api import ApiConfig, CohereConfig, JinaConfig, LLMConfig, VoyageConfig
from rerank_core.config.base import ConfigError, CustomResources, StrictModel, resolve_secret
from rerank_core.config.local import (
    CAUSAL_LM_PRESETS,
    PACKAGED_MINILM,
    BiEncoderConfig,
    CausalLMConfig,
    CrossEncoderConfig,
    LocalModelConfig,
    ServingConfig,
    is_local_path,
)
from rerank_core.config.service import (
    LOCAL_TYPES,
    AuthConfig,
    BackendConfig,
    BreakerConfig,
    LimitsConfig,
    RouteConfig,
    RouterConfig,
    RouteSettings,
    ServiceConfig,
    load_app_args,
    load_config,
    read_yaml,
)
from rerank_core.config.tenants import (
    DEFAULT_TENANT,
    QuotaStoreConfig,
    TenantConfig,
    TrafficClass,
    key_digest,
)

__all__ = [
    "CAUSAL_LM_PRESETS",
    "DEFAULT_TENANT",
    "LOCAL_TYPES",
    "PACKAGED_MINILM",
    "ApiConfig",
    "AuthConfig",
    "BackendConfig",
    "BiEncoderConfig",
    "BreakerConfig",
    "CausalLMConfig",
    "CohereConfig",
    "ConfigError",
    "CrossEncoderConfig",
    "CustomResources",
    "JinaConfig",
    "LLMConfig",
    "LimitsConfig",
    "LocalModelConfig",
    "QuotaStoreConfig",
    "RouteConfig",
    "RouteSettings",
    "RouterConfig",
    "ServiceConfig",
    "ServingConfig",
    "StrictModel",
    "TenantConfig",
    "TrafficClass",
    "VoyageConfig",
    "is_local_path",
    "key_digest",
    "load_app_args",
    "load_config",
    "read_yaml",
    "resolve_secret",
]
