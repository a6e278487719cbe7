"""Build the Serve application from configuration: ``import_path: deployments.app:build_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.serve import Application

from deployments.ingress import check_haproxy
from deployments.models import LocalModelDeployment
from deployments.router import Router
from rerank_core.config import (
    LOCAL_TYPES,
    LocalModelConfig,
    ServiceConfig,
    ServingConfig,
    is_local_path,
    load_app_args,
)


def model_deployment_name(backend_name: str) -> str:
    """The Serve deployment name of a local model (what serve_config's ``deployments`` names)."""
    return f"model-{backend_name}"


def absolute_model_paths(service: ServiceConfig) -> ServiceConfig:
    """Local model directories written relative to where the application is built, made absolute
    (replicas run in another working directory). Whether a directory exists is checked by the
    replica that loads it, on its own node: a missing one fails that deployment, naming the model.
    """
    backends = {}
    for name, cfg in service.backends.items():
        if cfg.type in LOCAL_TYPES and is_local_path(cfg.model):
            cfg = cfg.model_copy(update={"model": str(Path(cfg.model).expanduser().absolute())})
        backends[name] = cfg
    return service.model_copy(update={"backends": backends})


def replica_env(s: ServingConfig) -> dict[str, str]:
    """A model replica's threads. Ray sets OMP_NUM_THREADS from num_cpus; torch must use what the
    config says. On CPU the replica tokenizes on one thread of its own beside the model's: a
    tokenizer thread pool would spin against the model's threads for the same cores. Beside a GPU
    the replica's CPUs do little else, and one tokenizing thread would cap the replica's pairs/s
    (docs/benchmarks.md): the tokenizer's pool gets the replica's CPUs."""
    env = {"OMP_NUM_THREADS": str(s.resolved_torch_threads), "TOKENIZERS_PARALLELISM": "false"}
    if s.num_gpus > 0:
        env |= {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": str(max(1, int(s.num_cpus)))}
    return env


def model_deployment_options(name: str, cfg: LocalModelConfig) -> dict[str, Any]:
    """The Serve options of a local model's deployment, all from its ``serving`` block."""
    s = cfg.serving
    options: dict[str, Any] = {
        "name": model_deployment_name(name),
        "ray_actor_options": {
            "num_cpus": s.num_cpus,
            "num_gpus": s.num_gpus,
            "resources": s.resources,
            "runtime_env": {"env_vars": replica_env(s)},
        },
        "max_ongoing_requests": s.max_ongoing_requests,
        "max_queued_requests": s.max_queued_requests or -1,
        "user_config": {
            "max_batch_size": s.max_batch_size,
            "batch_wait_timeout_s": s.batch_wait_timeout_s,
        },
    }
    if s.min_replicas == s.max_replicas:
        options["num_replicas"] = s.min_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": s.min_replicas,
            "max_replicas": s.max_replicas,
            "target_ongoing_requests": s.target_ongoing_requests,
            "upscale_delay_s": s.upscale_delay_s,
            "downscale_delay_s": s.downscale_delay_s,
        }
    return options


def build_app(args: dict[str, Any]) -> Application:
    """The application: one deployment per local model and the Router holding their handles.

    ``args`` holds the service configuration under ``service`` (a mapping) or ``config_file``
    (a YAML path); it is validated here, so a bad field stops ``serve run`` with its name, as does
    ``RAY_SERVE_ENABLE_HA_PROXY=1`` without a runnable HAProxy (``deployments.ingress``).
    """
    check_haproxy()
    service = absolute_model_paths(load_app_args(args))
    handles = {
        name: LocalModelDeployment.options(**model_deployment_options(name, cfg)).bind(
            name, cfg.model_dump(mode="json")
        )
        for name, cfg in service.backends.items()
        if cfg.type in LOCAL_TYPES
    }
    r = service.router
    return Router.options(
        num_replicas=r.num_replicas,
        max_ongoing_requests=r.max_ongoing_requests,
        max_queued_requests=r.max_queued_requests or -1,
        # Past the router's queue, Serve's proxy refuses as the router does: 429 and Retry-After.
        backpressure_config={"status_code": 429, "retry_after_s": r.retry_after_s},
        ray_actor_options={"num_cpus": r.num_cpus, "resources": r.resources},
    ).bind(service.model_dump(mode="json"), handles)
