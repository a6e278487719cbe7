"""One real Ray Serve application on a local Ray for every serving test.

Ray starts once per session (``num_cpus=2``); the application is built from configuration by
``deployments.app.build_app``, as ``serve run`` does, with the tiny cross-encoder built in a fixture,
the packaged bi-encoder, and vendor stubs on 127.0.0.1 (Ray replicas reach them over loopback).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from deployments.ingress import HIGH_THROUGHPUT_ENV
from rerank_tools.ingress_env import isolated_haproxy_env, short_haproxy_dir
from tests.stubs.vendors import CohereStub, JinaStub

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Handles report load to the autoscaler every second (Serve's default is 10 s), so the autoscaling
# test sees replicas come and go within seconds.
os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
# A Router replica behind direct ingress drains for 30 s when its application is deleted, so that
# an outside load balancer notices; the tests have none, and each of their apps' deletion waited
# those 30 s.
os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
# The shipped ingress (HAProxy + throughput-optimized, as `make run`, the image and KubeRay start it),
# so the tests exercise the path users get; set RAY_SERVE_ENABLE_HA_PROXY=0 and
# RAY_SERVE_THROUGHPUT_OPTIMIZED=0 to test Ray's Python proxy instead. HAProxy's files and ports are
# this run's own.
HAPROXY_DIR = short_haproxy_dir()
atexit.register(shutil.rmtree, HAPROXY_DIR, ignore_errors=True)
for _key, _value in {**HIGH_THROUGHPUT_ENV, **isolated_haproxy_env(HAPROXY_DIR)}.items():
    os.environ.setdefault(_key, _value)

FAKE_CO_KEY = "co-fake-key-3f9a1c"
FAKE_JINA_KEY = "jina-fake-key-77b2e0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedApp:
    url: str
    cohere_ok: CohereStub
    cohere_bad: CohereStub
    cohere_flaky: CohereStub
    jina_slow: JinaStub
    config: dict[str, Any]
    #: A vendor the fallback tests set to refuse (401, 403, 400, ...).
    cohere_refusing: CohereStub

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=60, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kw)


def settled_stats(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A model's ``/v1/stats`` figures once its replicas' last reports have reached the board
    (replicas report at most every quarter second): two reads 0.3 s apart that agree, busy time
    aside (health checks add to it)."""
    deadline = time.monotonic() + 15
    last = read()
    while True:
        time.sleep(0.3)
        now = read()
        same = {k: v for k, v in now.items() if k not in ("busy_s", "replicas")} == {
            k: v for k, v in last.items() if k not in ("busy_s", "replicas")
        }
        if same or time.monotonic() > deadline:
            return now
        last = now


#: Where the local Ray exports Prometheus metrics during the tests.
METRICS_PORT = free_port()
#: The local Ray's log folder, once it has started (from what ``ray.init`` returns).
RAY_LOGS: list[Path] = []


@pytest.fixture(scope="session")
def ray_serve() -> Iterator[int]:
    """A local Ray with Serve listening on a free loopback port; shut down through Ray's API."""
    import ray
    from ray import serve

    port = free_port()
    context = ray.init(
        # A new local Ray, never one another test (or a developer) started on this host.
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="rerank-tests",
        log_to_driver=False,
        _metrics_export_port=METRICS_PORT,
    )
    RAY_LOGS.append(Path(context.address_info["session_dir"]) / "logs")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def serving(**over: Any) -> dict[str, Any]:
    base = {
        "num_cpus": 0.25,
        "torch_threads": 1,
        "max_batch_size": 32,
        "batch_wait_timeout_s": 0.02,
        "max_ongoing_requests": 64,
        # Off, so that every request's pairs reach the batcher and the batch statistics count them.
        "score_cache_mib": 0,
    }
    base.update(over)
    return base


def broken_model(tiny: Path) -> Path:
    """A copy of the tiny model beside it whose tokenizer maps "the" past the embedding table, so
    a pair holding "the" fails in the model's forward pass. (A ``max_length`` beyond the model's
    positions no longer breaks a model this way: it is refused when the model loads.)"""
    broken = tiny.parent / f"{tiny.name}-broken"
    if not broken.is_dir():
        shutil.copytree(tiny, broken)
        words = [w for w in (broken / "vocab.txt").read_text().split("\n") if w and w != "the"]
        (broken / "vocab.txt").write_text("\n".join([*words, "[unused0]", "the"]) + "\n")
        (broken / "tokenizer.json").unlink(missing_ok=True)
    return broken


def service_config(
    tiny: Path,
    secrets: Path,
    *,
    co_ok: str,
    co_bad: str,
    jina_slow: str,
    co_flaky: str,
    co_401: str,
    co_refusing: str,
) -> dict[str, Any]:
    (secrets / "co").write_text(FAKE_CO_KEY)
    (secrets / "jina").write_text(FAKE_JINA_KEY)
    co_key = str(secrets / "co")
    return {
        "backends": {
            "tiny": {"type": "cross_encoder", "model": str(tiny), "serving": serving(num_cpus=0.5)},
            "minilm": {"type": "bi_encoder", "serving": serving(num_cpus=0.5)},
            # Loads and answers the health check, then fails every request holding "the".
            "broken": {
                "type": "cross_encoder",
                "model": str(broken_model(tiny)),
                "serving": serving(),
            },
            "co_ok": {"type": "cohere", "base_url": co_ok, "api_key_file": co_key, "timeout_s": 5},
            "co_bad": {"type": "cohere", "base_url": co_bad, "api_key_file": co_key, "timeout_s": 5},
            "jina_slow": {
                "type": "jina",
                "base_url": jina_slow,
                "api_key_file": str(secrets / "jina"),
                "timeout_s": 30,
            },
            "voyage_off": {"type": "voyage", "api_key_env": "RERANK_TEST_UNSET_VOYAGE_KEY"},
            # For the fault tests: a model whose replica gets killed, an API failing a fraction of
            # calls, and an API that rejects our key.
            "victim": {"type": "cross_encoder", "model": str(tiny), "serving": serving()},
            "co_flaky": {"type": "cohere", "base_url": co_flaky, "api_key_file": co_key, "timeout_s": 5},
            "co_401": {"type": "cohere", "base_url": co_401, "api_key_file": co_key, "timeout_s": 5},
            "co_refusing": {
                "type": "cohere", "base_url": co_refusing, "api_key_file": co_key, "timeout_s": 5,
            },
        },
        "routes": {
            "default": {"backends": ["tiny"]},
            "api": {"backends": ["co_ok", "tiny"]},
            "with-fallback": {"backends": ["co_bad", "tiny"], "retries": 1},
            "hanging": {"backends": ["jina_slow", "tiny"], "timeout_s": 1, "retries": 0},
            "broken-model": {"backends": ["broken", "tiny"], "retries": 0},
            "strict": {"backends": ["co_bad", "voyage_off"], "last_resort": False, "retries": 0},
            "all-down": {"backends": ["co_bad", "voyage_off"], "retries": 0},
            "victim-route": {"backends": ["victim", "minilm"], "timeout_s": 5, "retries": 1},
            "flaky-api": {"backends": ["co_flaky", "tiny"], "timeout_s": 0.5, "retries": 1},
            "auth-fail": {"backends": ["co_401", "tiny"]},
            "refusing": {"backends": ["co_refusing", "tiny"], "retries": 2},
            "keyless": {"backends": ["voyage_off", "tiny"]},
            "slow-api": {"backends": ["jina_slow"], "timeout_s": 20, "retries": 0},
        },
        "breaker": {"failures": 5, "reset_s": 2},
        "default_route": "default",
        "router": {"num_cpus": 0.1},
        # Small limits, so the tests of each limit send small bodies.
        "limits": {
            "max_documents": 50,
            "max_document_chars": 5000,
            "max_request_chars": 60000,
            "max_query_chars": 500,
            "max_body_bytes": 100_000,
            "request_timeout_s": 30,
        },
    }


@pytest.fixture(scope="session")
def app(
    ray_serve: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    from ray import serve

    from deployments.app import build_app

    with (
        CohereStub(api_key=FAKE_CO_KEY) as co_ok,
        CohereStub(api_key=FAKE_CO_KEY, behaviour="500") as co_bad,
        CohereStub(api_key=FAKE_CO_KEY) as co_flaky,
        CohereStub(api_key="a-key-we-do-not-have") as co_401,
        CohereStub(api_key=FAKE_CO_KEY) as co_refusing,
        JinaStub(api_key=FAKE_JINA_KEY, behaviour="slow", slow_s=5) as jina_slow,
    ):
        config = service_config(
            tiny_model_dir,
            tmp_path_factory.mktemp("secrets"),
            co_ok=co_ok.base_url,
            co_bad=co_bad.base_url,
            jina_slow=jina_slow.base_url,
            co_flaky=co_flaky.base_url,
            co_401=co_401.base_url,
            co_refusing=co_refusing.base_url,
        )
        serve.run(build_app({"service": config}), name="rerank", route_prefix="/")
        yield ServedApp(
            f"http://127.0.0.1:{ray_serve}", co_ok, co_bad, co_flaky, jina_slow, config, co_refusing
        )
        serve.delete("rerank")


#: Raw keys of the tenants app (``tenants_app``): its config holds their SHA-256 digests only.
TENANT_KEYS = {
    "ops": "ops-key-0c1d2e",
    "trial": "trial-key-5e6f7a",
    "pairs": "pairs-key-8b9c0d",
    "capped": "capped-key-1e2f3a",
    "restricted": "restricted-key-4b5c6d",
    "batch": "batch-key-7e8f9a",
}


@dataclass
class TenantsApp:
    url: str
    co: CohereStub
    slow: CohereStub

    def post(self, tenant: str, body: Any, path: str = "/rerank", **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {TENANT_KEYS[tenant]}", **kw.pop("headers", {})}
        return requests.post(self.url + path, json=body, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="session")
def tenants_app(ray_serve: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantsApp]:
    """An application, /tenants, with auth on and a tenant for each limit: API backends only (a
    Cohere stub, and a slow one), so a request's hop to a backend is seen by the stub."""
    from ray import serve

    from deployments.app import build_app
    from rerank_core.config import key_digest

    secrets = tmp_path_factory.mktemp("tenant-secrets")
    (secrets / "ops").write_text(TENANT_KEYS["ops"] + "\n")
    (secrets / "co").write_text(FAKE_CO_KEY)
    (secrets / "batch").write_text(TENANT_KEYS["batch"] + "\n")

    def digests(name: str) -> list[str]:
        return [key_digest(TENANT_KEYS[name])]

    with (
        CohereStub(api_key=FAKE_CO_KEY) as co,
        CohereStub(api_key=FAKE_CO_KEY, behaviour="slow", slow_s=2) as slow,
    ):
        backend = {"type": "cohere", "api_key_file": str(secrets / "co")}
        config = {
            "backends": {
                "co": {**backend, "base_url": co.base_url},
                "slow": {**backend, "base_url": slow.base_url, "timeout_s": 10},
            },
            "routes": {
                "default": {"backends": ["co"], "retries": 0},
                "other": {"backends": ["co"], "retries": 0},
                "slowroute": {"backends": ["slow"], "timeout_s": 10, "retries": 0},
            },
            "auth": {
                "enabled": True,
                "api_keys_env": "RERANK_TEST_UNSET_KEYS",
                "api_keys_file": str(secrets / "ops"),
            },
            "tenants": {
                # 6 a minute in a bucket of 20 s: two at once, then one every 10 s.
                "trial": {"key_sha256": digests("trial"), "requests_per_minute": 6},
                # 12 pairs a minute: 4 at once, then one every 5 s.
                "pairs": {"key_sha256": digests("pairs"), "pairs_per_minute": 12},
                "capped": {"key_sha256": digests("capped"), "max_in_flight": 1},
                "restricted": {"key_sha256": digests("restricted"), "routes": ["default", "co"]},
                "batch": {"keys_file": str(secrets / "batch"), "traffic_class": "bulk"},
            },
            "quota_store": {"burst_s": 20},
            "router": {"num_cpus": 0.05},
        }
        serve.run(build_app({"service": config}), name="tenants", route_prefix="/tenants")
        yield TenantsApp(f"http://127.0.0.1:{ray_serve}/tenants", co, slow)
        serve.delete("tenants")
