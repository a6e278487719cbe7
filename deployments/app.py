"""Build the Serve application from configuration: ``import_path: deployments.app:build_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.serve import Application

from deployments.models import LocalModelDeployment
from deployments.router import make_router
from rerank_core.config import LOCAL_TYPES, ConfigError, ServiceConfig, load_app_args


def model_deployment_name(backend_name: str) -> str:
    """The Serve deployment name of a local model (what serve_config's ``deployments`` names)."""
    return f"model-{backend_name}"


def _resolve_local_paths(service: ServiceConfig) -> ServiceConfig:
    """Make local model directories absolute (replicas may run in another working directory), and
    fail at start-up, naming the model, when one does not exist.

    A Hugging Face id is resolved by the replica (from the local cache or the hub); if that fails,
    the deployment fails to start with the model's name in Serve's status and log.
    """
    backends = {}
    for name, cfg in service.backends.items():
        looks_like_path = cfg.type in LOCAL_TYPES and cfg.model.startswith(("/", "./", "../", "~"))
        if looks_like_path:
            path = Path(cfg.model).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(
                    f"backends.{name}.model: the directory {cfg.model!r} does not exist"
                )
            cfg = cfg.model_copy(update={"model": str(path)})
        backends[name] = cfg
    return service.model_copy(update={"backends": backends})


def build_app(args: dict[str, Any]) -> Application:
    """The application: one deployment per local model and the Router holding their handles.

    ``args`` holds the service configuration under ``service`` (a mapping) or ``config_file``
    (a YAML path); it is validated here, so a bad field stops ``serve run`` with its name.
    """
    service = _resolve_local_paths(load_app_args(args))
    handles = {}
    for name, cfg in service.backends.items():
        if cfg.type not in LOCAL_TYPES:
            continue
        s = cfg.serving
        options: dict[str, Any] = {
            "name": model_deployment_name(name),
            "ray_actor_options": {
                "num_cpus": s.num_cpus,
                "num_gpus": s.num_gpus,
                # Ray sets OMP_NUM_THREADS from num_cpus; the replica's torch uses the configured
                # thread count instead, and OpenMP reads it only at process start.
                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(s.threads)}},
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
            }
        handles[name] = LocalModelDeployment.options(**options).bind(
            name, cfg.model_dump(mode="json")
        )
    router = make_router(service.model_dump(mode="json"))
    r = service.router
    return router.options(
        name="Router",
        num_replicas=r.num_replicas,
        max_ongoing_requests=r.max_ongoing_requests,
        max_queued_requests=r.max_queued_requests or -1,
        # Past the router's queue, Serve's proxy refuses as the router does: 429 and Retry-After.
        backpressure_config={"status_code": 429, "retry_after_s": r.retry_after_s},
        ray_actor_options={"num_cpus": r.num_cpus},
    ).bind(handles)
