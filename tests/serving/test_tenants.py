"""Tenants, served: each refusal reason with its status, code and headers, made before any hop to a
backend; the traffic class a request is served in; per-tenant figures; no raw key anywhere."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.serving.conftest import METRICS_PORT, RAY_LOGS, TENANT_KEYS, TenantsApp

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
