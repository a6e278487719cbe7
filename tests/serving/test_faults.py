"""Faults survived on the real Serve app: flaky vendors, a killed replica, everything down,
and secrets that never leak whatever fails."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.serving.conftest import FAKE_CO_KEY, FAKE_JINA_KEY, RAY_LOGS, ServedApp
from tests.tiny_models import EXAMPLES

pytestmark = pytest.mark.serve

EX = EXAMPLES[0]
DOCS = [*EX.irrelevant, EX.relevant]
RELEVANT = len(DOCS) - 1


def fire(app: ServedApp, model: str, n: int, workers: int = 8) -> list[requests.Response]:
    body = {"query": EX.query, "documents": DOCS, "model": model}
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: app.post("/rerank", body), range(n)))


@pytest.mark.parametrize(("status", "fraction"), [(500, 0.3), (429, 0.3), (503, 0.5)])
def test_vendor_failing_a_fraction_gives_no_client_errors(
    app: ServedApp, status: int, fraction: float
) -> None:
    app.cohere_flaky.reset()
    app.cohere_flaky.set_failures(fraction, status=status)
    responses = fire(app, "flaky-api", 150)
    assert [r.status_code for r in responses] == [200] * 150
    answered_by = Counter()
    for r in responses:
        body = r.json()
        answered_by[body["backend"]] += 1
        assert body["fallback"] is (body["backend"] != "co_flaky")
        assert not body["degraded"]
        assert body["results"][0]["index"] == RELEVANT
        if body["fallback"]:
            assert body["skipped"][0]["backend"] == "co_flaky"
    assert answered_by["co_flaky"] > 0
    assert app.cohere_flaky.calls >= 150
    app.cohere_flaky.reset()


def test_vendor_timing_out_falls_back_within_the_deadline(app: ServedApp) -> None:
    app.cohere_flaky.reset()
    app.cohere_flaky.set_behaviour("slow", slow_s=3)
    start = time.monotonic()
    responses = fire(app, "flaky-api", 24)
    assert all(r.status_code == 200 for r in responses)
    assert {r.json()["backend"] for r in responses} == {"tiny"}
    # Each request spends at most 2 x 0.5 s on the slow vendor (or nothing once the breaker opens).
    assert time.monotonic() - start < 24 * 3 / 8
    app.cohere_flaky.reset()


def replica_actor_names(deployment: str) -> list[str]:
    import ray

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"]
    ]


def test_killed_replica_is_replaced_and_no_request_hangs_or_misorders(app: ServedApp) -> None:
    import ray

    (victim,) = replica_actor_names("model-victim")
    body = {"query": EX.query, "documents": DOCS, "model": "victim-route"}
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(app.post, "/rerank", body) for _ in range(80)]
        time.sleep(0.5)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        responses = [f.result(timeout=60) for f in futures]
    by_status = Counter(r.status_code for r in responses)
    assert set(by_status) <= {200, 503}, by_status
    for r in responses:
        if r.status_code == 200:
            assert r.json()["results"][0]["index"] == RELEVANT
        else:
            assert r.json()["error"]["type"] in {"all_backends_failed", "backend_unavailable"}
    # Serve starts a new replica under a new name; the route answers from it again.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        names = replica_actor_names("model-victim")
        if names and names != [victim]:
            health = app.get("/health").json()["backends"]["victim"]
            if health["state"] == "ready":
                break
        time.sleep(1)
    else:
        pytest.fail("the killed replica was not replaced within 90 s")
    again = app.post("/rerank", body).json()
    assert again["backend"] == "victim" and again["results"][0]["index"] == RELEVANT


def test_vendor_rejecting_our_key_falls_back_without_the_key(app: ServedApp) -> None:
    resp = app.post("/rerank", {"query": "q", "documents": DOCS, "model": "auth-fail"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["backend"] == "tiny" and body["fallback"] is True and not body["degraded"]
    assert body["skipped"][0]["reason"].startswith("backend_auth_failed")
    assert FAKE_CO_KEY not in resp.text


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        ("401", None, "backend_auth_failed"),
        ("403", None, "backend_auth_failed"),
        ("400", "too many documents", "backend_bad_request"),
    ],
)
def test_a_vendor_refusal_falls_back_to_the_next_backend(
    app: ServedApp, status: str, message: str | None, code: str
) -> None:
    stub = app.cohere_refusing
    stub.reset()
    stub.set_behaviour(status, error_message=message)
    try:
        resp = app.post("/rerank", {"query": EX.query, "documents": DOCS, "model": "refusing"})
        health = app.get("/health").json()["backends"]["co_refusing"]
    finally:
        stub.set_behaviour("ok")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["backend"] == "tiny" and body["fallback"] is True and not body["degraded"]
    assert body["results"][0]["index"] == RELEVANT
    (skip,) = body["skipped"]
    assert skip["backend"] == "co_refusing" and skip["reason"].startswith(code)
    assert stub.calls == 1, "a refusal is not retried: the same call would be refused again"
    if code == "backend_auth_failed":
        # The refused key opens the backend's breaker at once, and /health says why.
        assert health["breaker"] == "open" and health["state"] == "degraded"
        reason = f"backend_auth_failed: co_refusing rejected the credentials ({status})"
        assert health["breaker_reason"].startswith(reason)
        # The breaker's reset (2 s here) lets a probe through; the fixed vendor closes it.
        time.sleep(2.1)
        probe = app.post("/rerank", {"query": "q", "documents": DOCS, "model": "refusing"}).json()
        assert probe["backend"] == "co_refusing" and not probe["fallback"]
    else:
        assert health["breaker"] == "closed", "a vendor's limit is no sign of a failing backend"
    assert FAKE_CO_KEY not in resp.text + str(health)


def test_the_cli_answers_a_route_as_the_service_does_without_keys(
    app: ServedApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerank_core.cli import main

    served = app.post("/rerank", {"query": EX.query, "documents": DOCS, "model": "keyless"}).json()
    config = tmp_path / "service.yaml"
    config.write_text(yaml.safe_dump(app.config))
    assert main([EX.query, *DOCS, "--config", str(config), "--model", "keyless", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["backend"] == served["backend"] == "tiny"
    assert cli["fallback"] is served["fallback"] is True and not cli["degraded"]
    assert cli["skipped"] == served["skipped"]
    assert [r["index"] for r in cli["results"]] == [r["index"] for r in served["results"]]
    scores = [r["score"] for r in served["results"]]
    assert [r["score"] for r in cli["results"]] == pytest.approx(scores, abs=1e-5)


def ray_log_files() -> list[Path]:
    (logs,) = RAY_LOGS
    return [p for p in logs.rglob("*") if p.is_file() and p.suffix in {".log", ".out", ".err"}]


def test_secrets_never_appear_in_responses_or_logs(app: ServedApp) -> None:
    bodies = []
    for model in ["auth-fail", "with-fallback", "strict", "all-down", "hanging", "api"]:
        for path in ("/rerank", "/v2/rerank"):
            r = app.post(path, {"query": "cat", "documents": DOCS, "model": model})
            bodies.append(r.text + str(r.headers))
    bodies += [app.get(p).text for p in ("/health", "/v1/models", "/v1/stats", "/openapi.json")]
    time.sleep(1)  # let replicas flush their logs
    for secret in (FAKE_CO_KEY, FAKE_JINA_KEY):
        assert not [b for b in bodies if secret in b], "a secret reached a response"
        leaked = [p for p in ray_log_files() if secret in p.read_text(errors="replace")]
        assert not leaked, f"a secret reached the logs: {leaked}"
    # The stubs really got the keys, so the check above could have found them.
    assert app.cohere_ok.last_request.bearer == FAKE_CO_KEY


def test_client_disconnect_cancels_the_work(app: ServedApp) -> None:
    import json
    import socket
    from urllib.parse import urlsplit

    stats = lambda: app.get("/v1/stats").json()["router"]["in_flight"]  # noqa: E731
    assert stats() == 0
    body = json.dumps({"query": "q", "documents": ["a", "b"], "model": "slow-api"}).encode()
    host, port = urlsplit(app.url).hostname, urlsplit(app.url).port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(1.0)
        assert stats() == 1, "the request is waiting on the 5 s vendor"
    # The client is gone; the vendor stub would answer only ~4 s from now.
    deadline = time.monotonic() + 2.5
    while stats() != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stats() == 0, "the router still works for a client that left"
