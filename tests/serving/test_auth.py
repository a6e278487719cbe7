"""Service API keys: off by default, on with one setting; /health stays open for probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cohere
import pytest
import requests

from tests.serving.conftest import FAKE_CO_KEY, ServedApp
from tests.stubs.vendors import CohereStub

pytestmark = pytest.mark.serve

SERVICE_KEYS = ("svc-key-one-5d1e", "svc-key-two-9a7c")


@pytest.fixture(scope="module")
def secure_url(app: ServedApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second application, /secure, with auth on and keys from a mounted-secret-style file."""
    from ray import serve

    from deployments.app import build_app

    secrets: Path = tmp_path_factory.mktemp("secure")
    (secrets / "keys").write_text("\n".join(SERVICE_KEYS) + "\n")
    (secrets / "co").write_text(FAKE_CO_KEY)
    with CohereStub(api_key=FAKE_CO_KEY) as co:
        config = {
            "backends": {
                "co": {"type": "cohere", "base_url": co.base_url, "api_key_file": str(secrets / "co")}
            },
            "auth": {
                "enabled": True,
                "api_keys_env": "RERANK_TEST_UNSET_KEYS",
                "api_keys_file": str(secrets / "keys"),
            },
            "router": {"num_cpus": 0.05},
        }
        serve.run(build_app({"service": config}), name="secure", route_prefix="/secure")
        yield app.url + "/secure"
        serve.delete("secure")


BODY = {"query": "cat purr", "documents": ["rocket", "the cat will purr"]}
ROUTES = [("POST", "/rerank"), ("POST", "/v1/rerank"), ("POST", "/v2/rerank"), ("GET", "/v1/models")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key", f"Basic {SERVICE_KEYS[0]}", "Bearer ", f"Bearer {SERVICE_KEYS[0]}x"],
)
def test_without_a_valid_key_every_route_is_401(
    secure_url: str, method: str, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    resp = requests.request(method, secure_url + path, json=BODY, headers=headers, timeout=30)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["type"] == "unauthorized"
    assert SERVICE_KEYS[0] not in resp.text


@pytest.mark.parametrize("key", SERVICE_KEYS)
def test_each_configured_key_is_accepted(secure_url: str, key: str) -> None:
    resp = requests.post(
        secure_url + "/rerank", json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["index"] == 1


def test_cohere_sdk_uses_the_service_key(secure_url: str) -> None:
    co = cohere.ClientV2(api_key=SERVICE_KEYS[1], base_url=secure_url)
    assert co.rerank(model="co", query=BODY["query"], documents=BODY["documents"]).results[0].index == 1
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="nope", base_url=secure_url).rerank(
            model="co", query="q", documents=["a"]
        )


def test_health_stays_open(secure_url: str) -> None:
    health = requests.get(secure_url + "/health", timeout=30)
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "backends": {"co": {"type": "cohere", "breaker": "closed", "state": "ready"}},
    }


def test_auth_is_off_by_default(app: ServedApp) -> None:
    assert app.post("/rerank", BODY).status_code == 200
