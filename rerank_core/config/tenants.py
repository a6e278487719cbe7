"""Tenants: who holds each API key, its traffic class, its quotas and what it may use; and where
the Router's replicas share their quota counters."""

from __future__ import annotations

import hashlib
import os
import re

from pydantic import Field, field_validator

from rerank_core.config.base import StrictModel, read_keys
from rerank_core.types import Lane

#: A tenant's traffic class: ``interactive`` work is served ahead of ``bulk`` work at a model.
TrafficClass = Lane

#: The tenant of the keys in ``auth.api_keys_env`` / ``auth.api_keys_file``, and of every request
#: when auth is off. Unlimited and interactive unless ``tenants`` configures it.
DEFAULT_TENANT = "default"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str | bytes) -> str:
    """The SHA-256 of a key, in lower-case hex: how a tenant's key is written in a config file that
    must hold no raw key (``key_sha256``), and how the Router looks a presented key up."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


class TenantConfig(StrictModel):
    """One tenant: its keys, traffic class, quotas and the routes it may use. Quotas left out are
    unlimited."""

    key_sha256: list[str] = Field(default_factory=list)
    """SHA-256 digests (hex) of the tenant's keys, so a config file need hold no raw key
    (``printf %s "$KEY" | sha256sum``)."""
    keys_env: str | None = None
    """An environment variable holding more of its keys, comma-separated."""
    keys_file: str | None = None
    """A (mounted secret) file holding more of its keys, one a line."""
    traffic_class: TrafficClass = "interactive"
    """``interactive``: served ahead of bulk work at the model. ``bulk``: served behind
    interactive work (never starved), refused first under overload. A request may ask to be
    treated as bulk (``X-Rerank-Class: bulk``), never above its tenant's class."""
    requests_per_minute: float | None = Field(None, gt=0)
    """Requests a minute, over all of the Router's replicas (a token bucket refilled
    continuously, holding ``quota_store.burst_s`` of it at most)."""
    pairs_per_minute: float | None = Field(None, gt=0)
    """Pairs a minute (documents scored: a request of 100 documents takes 100), over all of the
    Router's replicas. A request larger than the bucket is admitted when the bucket is full and
    leaves it in debt, so the quota holds over time whatever the request sizes."""
    max_in_flight: int | None = Field(None, ge=1)
    """Requests of this tenant being answered at once, over all of the Router's replicas (each
    replica holds its share: the cap divided by ``router.num_replicas``, rounded up)."""
    routes: list[str] | None = None
    """Routes and backends its requests may name (a request without ``model`` names the default
    route); None: every one. Others are refused with 403."""

    @field_validator("key_sha256")
    @classmethod
    def _digests(cls, digests: list[str]) -> list[str]:
        for d in digests:
            if not _SHA256.match(d):
                raise ValueError("each must be a SHA-256 digest: 64 lower-case hex characters")
        return digests

    def load_key_digests(self) -> list[str]:
        """The digests of every key of this tenant: configured ones, then those of the raw keys
        in ``keys_env`` and ``keys_file`` (read here, where the Router runs)."""
        raw = read_keys(self.keys_env, self.keys_file)
        return list(self.key_sha256) + [key_digest(k.get_secret_value()) for k in raw]

    @property
    def limited(self) -> bool:
        """Whether any quota or cap applies to this tenant."""
        return (
            self.requests_per_minute is not None
            or self.pairs_per_minute is not None
            or self.max_in_flight is not None
        )


class QuotaStoreConfig(StrictModel):
    """Where the Router's replicas count their tenants' quotas."""

    redis_url: str | None = None
    """A Redis server shared by the Router's replicas (``redis://host:6379/0``; the one the Ray
    cluster uses for GCS fault tolerance will do). None: each replica counts alone, its share of
    each quota (the quota divided by ``router.num_replicas``)."""
    redis_url_env: str | None = "RERANK_QUOTA_REDIS_URL"
    """An environment variable that, when set, gives ``redis_url`` (a URL with a password need
    not be written in the config)."""
    timeout_s: float = Field(0.05, gt=0)
    """Seconds a replica waits for Redis on a request before it counts that request alone,
    against its share of the quota."""
    retry_s: float = Field(1.0, gt=0)
    """Seconds a replica counts alone after Redis failed to answer, before it tries Redis again."""
    burst_s: float = Field(2.0, gt=0)
    """Seconds of its quota a tenant may spend at once (the bucket's size; at least one request).
    Over a minute a tenant gets at most its quota plus this much of it."""

    def resolved_url(self) -> str | None:
        """``redis_url``, or the value of ``redis_url_env`` when that is set."""
        if self.redis_url_env and os.environ.get(self.redis_url_env):
            return os.environ[self.redis_url_env]
        return self.redis_url
