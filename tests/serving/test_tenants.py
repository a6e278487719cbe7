"""Tenants, served: each refusal reason with its status, code and headers, made before any hop to a
backend; the traffic class a request is served in; per-tenant figures; no raw key anywhere."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.serving.conftest import FAKE_CO_KEY, METRICS_PORT, RAY_LOGS, TENANT_KEYS, TenantsApp

pytestmark = pytest.mark.serve

TWO = {"query": "cat purr", "documents": ["rocket", "the cat will purr"]}


def test_a_key_over_its_requests_quota_gets_429_with_when_and_what_is_left(
    tenants_app: TenantsApp,
) -> None:
    before = tenants_app.co.calls
    first, second = (tenants_app.post("trial", TWO) for _ in range(2))
    assert first.status_code == second.status_code == 200, second.text
    assert first.headers["RateLimit-Policy"] == '"requests";q=6;w=60'
    assert first.headers["RateLimit"].startswith('"requests";r=1;')
    assert second.headers["RateLimit"].startswith('"requests";r=0;')
    refused = tenants_app.post("trial", TWO)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "quota_exceeded"
    assert "requests a minute" in error["message"]
    # One request every 10 s refills the bucket: the refusal says when.
    assert 5 <= int(refused.headers["Retry-After"]) <= 10
    assert refused.headers["RateLimit-Policy"] == '"requests";q=6;w=60'
    assert refused.headers["RateLimit"].startswith('"requests";r=0;')
    # Refused before any work: unread (a body that is not even JSON gets the same answer), and
    # the backend saw only the two admitted requests.
    unread = requests.post(
        tenants_app.url + "/v2/rerank",
        data=b"{not json",
        headers={"Authorization": f"Bearer {TENANT_KEYS['trial']}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert unread.status_code == 429 and unread.json()["error"]["type"] == "quota_exceeded"
    assert tenants_app.co.calls - before == 2
    # Another tenant is not affected.
    assert tenants_app.post("ops", TWO).status_code == 200


def test_a_key_over_its_pairs_quota_is_refused_by_documents(tenants_app: TenantsApp) -> None:
    ok = [tenants_app.post("pairs", TWO) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200], ok[-1].text
    assert ok[0].headers["RateLimit"].startswith('"pairs";r=2;')
    refused = tenants_app.post("pairs", TWO)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "quota_exceeded"
    assert "pairs a minute" in refused.json()["error"]["message"]
    assert refused.headers["RateLimit-Policy"] == '"pairs";q=12;w=60'
    stats = requests.get(
        tenants_app.url + "/v1/stats",
        headers={"Authorization": f"Bearer {TENANT_KEYS['pairs']}"},
        timeout=30,
    ).json()
    # A tenant's key sees its own figures only.
    assert list(stats["router"]["tenants"]) == ["pairs"]
    assert stats["router"]["tenants"]["pairs"]["refused"] == {"pairs_quota": 1}
    assert stats["router"]["tenants"]["pairs"]["pairs"] == 4


def test_a_tenant_at_its_cap_of_requests_in_flight_is_refused(tenants_app: TenantsApp) -> None:
    body = {**TWO, "model": "slowroute"}
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(tenants_app.post, "capped", body)
        time.sleep(0.5)  # the first is in flight (the slow vendor takes 2 s)
        refused = tenants_app.post("capped", body)
        assert slow.result().status_code == 200
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "concurrency_limited"
    assert "Retry-After" in refused.headers
    # Unlimited quotas: no RateLimit headers.
    assert "RateLimit-Policy" not in refused.headers
    # The cap is freed once the first is answered.
    assert tenants_app.post("capped", body).status_code == 200


def test_a_route_the_tenant_may_not_use_is_403(tenants_app: TenantsApp) -> None:
    before = tenants_app.co.calls
    refused = tenants_app.post("restricted", {**TWO, "model": "other"})
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "type": "route_forbidden",
        "message": "this key's tenant may not use 'other'",
        "field": "model",
        "request_id": refused.json()["error"]["request_id"],
    }
    assert tenants_app.co.calls == before
    for model in (None, "co"):
        body = TWO if model is None else {**TWO, "model": model}
        assert tenants_app.post("restricted", body).status_code == 200
    # The Cohere-compatible routes are the same tenant's.
    assert tenants_app.post("restricted", {**TWO, "model": "other"}, path="/v2/rerank").status_code == 403


@pytest.mark.parametrize(
    ("tenant", "asked", "served"),
    [
        ("ops", None, "interactive"),
        ("ops", "bulk", "bulk"),
        ("batch", None, "bulk"),
        # Never above the key's class.
        ("batch", "interactive", "bulk"),
    ],
)
def test_the_traffic_class_a_request_is_served_in(
    tenants_app: TenantsApp, tenant: str, asked: str | None, served: str
) -> None:
    headers = {"X-Rerank-Class": asked} if asked else {}
    resp = tenants_app.post(tenant, TWO, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Rerank-Class"] == served


def test_a_class_that_does_not_exist_is_422_naming_the_header(tenants_app: TenantsApp) -> None:
    resp = tenants_app.post("ops", TWO, headers={"X-Rerank-Class": "urgent"})
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == "X-Rerank-Class"
    assert "interactive or bulk" in resp.json()["error"]["message"]


def test_an_operator_key_sees_every_tenant(tenants_app: TenantsApp) -> None:
    stats = requests.get(
        tenants_app.url + "/v1/stats",
        headers={"Authorization": f"Bearer {TENANT_KEYS['ops']}"},
        timeout=30,
    ).json()
    tenants = stats["router"]["tenants"]
    assert set(tenants) == {"default", "trial", "pairs", "capped", "restricted", "batch"}
    assert tenants["batch"]["class"] == "bulk"
    assert stats["router"]["quota_store"] == {"shared": False, "counted_alone": 0}


def test_no_raw_key_in_answers_logs_or_metrics(tenants_app: TenantsApp) -> None:
    seen = []
    for tenant in TENANT_KEYS:
        for model in (None, "other", "slowroute", "nope"):
            body = TWO if model is None else {**TWO, "model": model}
            r = tenants_app.post(tenant, body)
            seen.append(r.text + str(r.headers))
    seen.append(requests.post(tenants_app.url + "/rerank", json=TWO, timeout=30).text)
    assert all(key not in text for key in TENANT_KEYS.values() for text in seen)
    # Ray exports metrics every few seconds: wait until the refusals are, then read them all.
    deadline = time.monotonic() + 60
    metrics = ""
    while time.monotonic() < deadline:
        metrics = requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
        if 'ray_rerank_tenant_refusals_total{' in metrics and 'reason="route"' in metrics:
            break
        time.sleep(2)
    assert 'tenant="restricted"' in metrics
    (logs,) = RAY_LOGS
    for path in (p for p in logs.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        leaked = [t for t, key in TENANT_KEYS.items() if key in text]
        assert not leaked, f"{path} holds the raw key of {leaked}"
    assert all(key not in metrics for key in TENANT_KEYS.values())


def test_two_router_replicas_share_a_quota_through_redis_and_their_shares_while_it_is_down(
    ray_serve: int, redis_server: Path, tmp_path: Path
) -> None:
    from ray import serve

    from deployments.app import build_app
    from rerank_core.config import key_digest
    from rerank_tools.cluster import RedisServer
    from tests.stubs.vendors import CohereStub

    key = TENANT_KEYS["trial"]
    server = RedisServer()
    server.start(tmp_path / "redis.log")
    (tmp_path / "co").write_text(FAKE_CO_KEY)
    with CohereStub(api_key=FAKE_CO_KEY) as co:
        config = {
            "backends": {
                "co": {"type": "cohere", "base_url": co.base_url, "api_key_file": str(tmp_path / "co")}
            },
            "auth": {"enabled": True, "api_keys_env": "RERANK_TEST_UNSET_KEYS"},
            # 60 a minute in a bucket of 2 s: two at once over both replicas, then one a second;
            # counted alone, each replica its share: a bucket of one.
            "tenants": {"trial": {"key_sha256": [key_digest(key)], "requests_per_minute": 60}},
            "quota_store": {
                "redis_url": f"redis://127.0.0.1:{server.port}/0",
                "burst_s": 2,
                "retry_s": 0.5,
            },
            "router": {"num_cpus": 0.05, "num_replicas": 2},
        }
        serve.run(build_app({"service": config}), name="shared", route_prefix="/shared")
        url = f"http://127.0.0.1:{ray_serve}/shared/rerank"

        def burst(n: int) -> list[int]:
            auth = {"Authorization": f"Bearer {key}"}
            return [requests.post(url, json=TWO, headers=auth, timeout=30).status_code for _ in range(n)]

        try:
            # (Eight requests take well under the second that refills one.)
            shared = burst(8)
            assert set(shared) == {200, 429} and shared.count(200) == 2, shared
            assert server.keys("quota:trial") == ["shared:quota:trial:requests"]
            server.stop()
            time.sleep(2.5)  # the buckets refill
            # Each replica its share: never everyone refused, never all granted.
            alone = burst(8)
            assert set(alone) <= {200, 429} and 1 <= alone.count(200) <= 2, alone
            server.start(tmp_path / "redis.log")
            time.sleep(2.5)  # past retry_s the replicas ask Redis again (a fresh one: a full bucket)
            assert server.keys("quota:trial") == []
            back = burst(8)
            assert set(back) == {200, 429} and back.count(200) == 2, back
            assert server.keys("quota:trial") == ["shared:quota:trial:requests"]
        finally:
            serve.delete("shared")
            server.stop()
