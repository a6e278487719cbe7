"""The Serve application over real HTTP: contracts, Cohere compatibility, batching, fallback."""

from __future__ import annotations

import threading

import cohere
import pytest
import requests

from tests.serving.conftest import METRICS_PORT, ServedApp, settled_stats
from tests.tiny_models import EXAMPLES

pytestmark = pytest.mark.serve

EX = EXAMPLES[0]
DOCS = [*EX.irrelevant, EX.relevant]  # the relevant document last, so order must change
RELEVANT = len(DOCS) - 1


def test_rerank_contract_and_order(app: ServedApp) -> None:
    resp = app.post("/rerank", {"query": EX.query, "documents": DOCS, "top_k": 2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["backend"] == "tiny" and body["model"] == "default"
    assert body["fallback"] is False and body["degraded"] is False
    assert body["latency"] > 0 and resp.headers.get("content-type") == "application/json"
    results = body["results"]
    assert len(results) == 2
    assert results[0]["index"] == RELEVANT and results[0]["document"] == EX.relevant
    assert results[0]["score"] >= results[1]["score"]
    assert all(0.0 <= r["score"] <= 1.0 and "raw_score" in r for r in results)


def test_every_tiny_example_ranks_relevant_first(app: ServedApp) -> None:
    for ex in EXAMPLES:
        docs = [*ex.irrelevant, ex.relevant]
        body = app.post("/rerank", {"query": ex.query, "documents": docs}).json()
        assert body["results"][0]["index"] == len(docs) - 1, ex.query
        assert len(body["results"]) == len(docs)


def test_documents_as_objects_keep_id_and_metadata(app: ServedApp) -> None:
    docs = [{"text": t, "id": f"d{i}", "metadata": {"n": i}} for i, t in enumerate(DOCS)]
    body = app.post(
        "/rerank", {"query": EX.query, "documents": docs, "top_n": 1, "return_documents": False}
    ).json()
    (top,) = body["results"]
    assert top == {
        "index": RELEVANT,
        "score": top["score"],
        "raw_score": top["raw_score"],
        "id": f"d{RELEVANT}",
        "metadata": {"n": RELEVANT},
    }


def test_packaged_bi_encoder_through_the_service(app: ServedApp) -> None:
    docs = [
        "The stock market fell sharply on Monday.",
        "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
        "The recipe needs two cups of flour.",
    ]
    body = app.post(
        "/rerank", {"query": "how do plants make food", "documents": docs, "model": "minilm"}
    ).json()
    assert body["backend"] == "minilm" and body["results"][0]["index"] == 1


def test_official_cohere_sdk_against_the_service(app: ServedApp) -> None:
    co = cohere.ClientV2(api_key="unused", base_url=app.url)
    response = co.rerank(model="default", query=EX.query, documents=DOCS, top_n=3)
    assert response.results[0].index == RELEVANT
    assert len(response.results) == 3
    assert all(0.0 <= r.relevance_score <= 1.0 for r in response.results)


def test_cohere_v1_and_jina_shapes(app: ServedApp) -> None:
    v1 = app.post(
        "/v1/rerank",
        {
            "model": "default",
            "query": EX.query,
            "documents": [{"text": d} for d in DOCS],
            "top_n": 2,
            "return_documents": True,
        },
    )
    assert v1.status_code == 200, v1.text
    body = v1.json()
    assert body["results"][0] == {
        "index": RELEVANT,
        "relevance_score": body["results"][0]["relevance_score"],
        "document": {"text": EX.relevant},
    }
    assert body["model"] == "default" and "usage" in body
    assert v1.headers["x-rerank-backend"] == "tiny"


def test_api_backend_through_the_service(app: ServedApp) -> None:
    app.cohere_ok.reset()
    body = app.post("/rerank", {"query": "purr cat", "documents": DOCS, "model": "api"}).json()
    assert body["backend"] == "co_ok" and body["fallback"] is False
    sent = app.cohere_ok.last_request
    assert sent.path == "/v2/rerank" and sent.bearer == "co-fake-key-3f9a1c"
    assert sent.json["documents"] == DOCS


def test_concurrent_requests_share_batches(app: ServedApp) -> None:
    before = settled_stats(lambda: app.get("/v1/stats").json()["models"]["tiny"])
    errors: list[str] = []

    def client() -> None:
        for _ in range(3):
            r = app.post("/rerank", {"query": EX.query, "documents": DOCS})
            if r.status_code != 200 or r.json()["results"][0]["index"] != RELEVANT:
                errors.append(r.text)

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    after = settled_stats(lambda: app.get("/v1/stats").json()["models"]["tiny"])
    assert after["pairs"] - before["pairs"] == 12 * 3 * len(DOCS)
    new_sizes = {
        int(size): count - before["sizes"].get(size, 0)
        for size, count in after["sizes"].items()
        if count > before["sizes"].get(size, 0)
    }
    # One request has 4 pairs; a batch of more than 4 holds pairs of several requests.
    assert max(new_sizes) > len(DOCS), new_sizes
    assert max(new_sizes) <= after["max_batch_size"]


def test_fallback_from_failing_api(app: ServedApp) -> None:
    body = app.post(
        "/rerank", {"query": EX.query, "documents": DOCS, "model": "with-fallback"}
    ).json()
    assert body["backend"] == "tiny" and body["fallback"] is True and not body["degraded"]
    assert body["results"][0]["index"] == RELEVANT
    assert body["skipped"][0]["backend"] == "co_bad"


def test_fallback_from_hanging_api(app: ServedApp) -> None:
    body = app.post("/rerank", {"query": EX.query, "documents": DOCS, "model": "hanging"}).json()
    assert body["backend"] == "tiny" and body["fallback"] is True
    assert body["skipped"][0]["backend"] == "jina_slow"
    assert body["latency"] < 5, "the route's 1 s deadline cut the 5 s stub short"


def test_fallback_from_model_that_raises(app: ServedApp) -> None:
    # Documents holding "the", which the "broken" model's tokenizer maps past its embeddings.
    long_docs = [d + " the" * 300 for d in DOCS]
    body = app.post(
        "/rerank", {"query": EX.query, "documents": long_docs, "model": "broken-model"}
    ).json()
    assert body["backend"] == "tiny" and body["fallback"] is True
    assert body["skipped"][0]["backend"] == "broken"
    assert body["results"][0]["index"] == RELEVANT


def test_everything_down_degrades_or_fails_as_configured(app: ServedApp) -> None:
    degraded = app.post("/rerank", {"query": "q", "documents": DOCS, "model": "all-down"}).json()
    assert degraded["degraded"] is True and degraded["backend"] == "original_order"
    assert [r["index"] for r in degraded["results"]] == list(range(len(DOCS)))
    reasons = {s["backend"]: s["reason"] for s in degraded["skipped"]}
    assert "RERANK_TEST_UNSET_VOYAGE_KEY is not set" in reasons["voyage_off"]

    strict = app.post("/rerank", {"query": "q", "documents": DOCS, "model": "strict"})
    assert strict.status_code == 503
    error = strict.json()["error"]
    assert error["type"] == "all_backends_failed" and "co_bad" in error["message"]


def test_health_models_and_docs(app: ServedApp) -> None:
    health = app.get("/health")
    assert health.status_code == 200
    backends = health.json()["backends"]
    assert backends["tiny"]["state"] == "ready" and backends["tiny"]["device"] == "cpu"
    assert backends["voyage_off"]["state"] == "disabled"
    assert health.json()["status"] in {"ok", "degraded"}
    models = app.get("/v1/models").json()
    ids = {m["id"] for m in models["data"]}
    assert {"default", "with-fallback", "tiny", "minilm", "co_ok"} <= ids
    assert models["default"] == "default"
    assert app.get("/docs").status_code == 200
    spec = app.get("/openapi.json").json()
    assert {"/rerank", "/v1/rerank", "/v2/rerank", "/health"} <= set(spec["paths"])


def test_unknown_model_is_404_naming_the_field(app: ServedApp) -> None:
    resp = app.post("/rerank", {"query": "q", "documents": ["a"], "model": "gpt-9"})
    assert resp.status_code == 404
    assert resp.json()["error"]["field"] == "model"
    assert requests.post(app.url + "/rerank", json={"query": "q", "documents": ["a"]}).ok


def test_prometheus_metrics_are_exported(app: ServedApp) -> None:
    import time

    for _ in range(3):
        app.post("/rerank", {"query": EX.query, "documents": DOCS, "model": "with-fallback"})
    wanted = ("ray_rerank_requests", "ray_rerank_fallbacks", "ray_rerank_request_latency_s",
              "ray_rerank_model_batch_pairs")

    def fallbacks_to_tiny(text: str) -> float:
        for ln in text.splitlines():
            if (
                ln.startswith("ray_rerank_fallbacks")
                and 'route="with-fallback"' in ln
                and 'backend="tiny"' in ln
            ):
                return float(ln.rsplit(" ", 1)[1])
        return 0.0

    # Ray exports metrics every few seconds: wait until the three fallbacks above are counted.
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
        if all(w in text for w in wanted) and fallbacks_to_tiny(text) >= 3:
            break
        time.sleep(2)
    missing = [w for w in wanted if w not in text]
    assert not missing, missing
    assert fallbacks_to_tiny(text) >= 3


def test_one_request_id_per_request_honouring_the_callers(app: ServedApp) -> None:
    good = {"query": EX.query, "documents": DOCS}
    for path, body in (("/rerank", good), ("/v2/rerank", good), ("/rerank", {"query": ""})):
        mine = app.post(path, body, headers={"X-Request-Id": "trace-42-abc"})
        assert mine.raw.headers.getlist("x-request-id") == ["trace-42-abc"], path
        sent = mine.json()
        assert (sent.get("id") or sent["error"]["request_id"]) == "trace-42-abc", path
        theirs = app.post(path, body)
        (rid,) = theirs.raw.headers.getlist("x-request-id")
        sent = theirs.json()
        assert rid and (sent.get("id") or sent["error"]["request_id"]) == rid, path


def test_every_answer_says_where_its_time_went(app: ServedApp) -> None:
    for path in ("/rerank", "/v2/rerank", "/v1/rerank"):
        r = app.post(path, {"query": EX.query, "documents": DOCS, "model": "default"})
        assert r.status_code == 200, r.text
        h = r.headers
        total, queue, model = (float(h[k]) for k in ("X-Total-Time", "X-Queue-Time", "X-Inference-Time"))
        assert 0 < model < total and 0 <= queue < total, dict(h)
        assert queue + model <= total
        assert (h["X-Pairs"], h["X-Cached-Pairs"]) == (str(len(DOCS)), "0"), path
    # An API backend's answer has no model time in it.
    api = app.post("/rerank", {"query": "purr cat", "documents": DOCS, "model": "api"}).headers
    assert (api["X-Pairs"], api["X-Inference-Time"]) == ("0", "0.0")


def test_the_served_model_and_the_in_process_cli_score_alike(app: ServedApp) -> None:
    """The Serve deployment and the ``rerank`` CLI run the same scoring engine: the same ranking
    and the same raw scores for the same model and request."""
    import asyncio

    from rerank_core.cli import rerank_with
    from rerank_core.config import load_config

    documents = [*DOCS, "the cat purred on the warm mat", "stock prices fell sharply today"]
    served = app.post("/rerank", {"query": EX.query, "documents": documents, "model": "tiny"})
    assert served.status_code == 200, served.text
    local = asyncio.run(rerank_with(load_config(app.config), "tiny", EX.query, documents, None))
    assert local.backend == "tiny"
    got = served.json()["results"]
    assert [r["index"] for r in got] == [s.index for s in local.results]
    assert [r["raw_score"] for r in got] == pytest.approx(
        [s.raw_score for s in local.results], abs=1e-6
    )
