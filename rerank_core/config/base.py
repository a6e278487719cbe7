"""What every configuration section shares: the error a bad field raises, strict frozen models,
Ray custom resources, and secrets read from a mounted file or the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from rerank_core.errors import RerankError


class ConfigError(RerankError):
    """The configuration is invalid; the message names the bad field."""

    code = "config_error"


class StrictModel(BaseModel):
    """A configuration section: unknown keys are refused, values are frozen; each field's
    docstring is its description in the schema and the configuration reference."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


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


def read_keys(env_name: str | None, file_path: str | None = None) -> list[SecretStr]:
    """Keys, comma-separated in the environment variable ``env_name`` and one a line in the
    (mounted secret) file ``file_path``; empty when neither holds one."""
    found: list[str] = []
    if env_name:
        found += [k.strip() for k in os.environ.get(env_name, "").split(",") if k.strip()]
    if file_path:
        path = Path(file_path)
        if path.is_file():
            found += [k.strip() for k in path.read_text().splitlines() if k.strip()]
    return [SecretStr(k) for k in found]
