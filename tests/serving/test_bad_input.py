"""Every bad request gets a 4xx whose JSON names the field; never a 500, never a stack trace.

After each bad request a good one still succeeds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.serving.conftest import ServedApp

pytestmark = pytest.mark.serve

GOOD = {"query": "cat purr", "documents": ["the cat will purr", "rocket launch"]}
DOC = "the cat will purr"


def j(body: Any) -> bytes:
    return json.dumps(body).encode()


# (name, path, raw body, content type, expected status, expected field or None)
CASES: list[tuple[str, str, bytes, str, int, str | None]] = [
    ("empty query", "/rerank", j({"query": "", "documents": [DOC]}), "application/json", 422, "query"),
    ("blank query", "/rerank", j({"query": "  \n", "documents": [DOC]}), "application/json", 422, "query"),
    ("missing query", "/rerank", j({"documents": [DOC]}), "application/json", 422, "query"),
    ("null query", "/rerank", j({"query": None, "documents": [DOC]}), "application/json", 422, "query"),
    ("query not a string", "/rerank", j({"query": 5, "documents": [DOC]}), "application/json", 422, "query"),
    ("query too long", "/rerank", j({"query": "q" * 501, "documents": [DOC]}), "application/json", 422, "query"),
    ("missing documents", "/rerank", j({"query": "q"}), "application/json", 422, "documents"),
    ("empty documents", "/rerank", j({"query": "q", "documents": []}), "application/json", 422, "documents"),
    ("null documents", "/rerank", j({"query": "q", "documents": None}), "application/json", 422, "documents"),
    ("documents a string", "/rerank", j({"query": "q", "documents": DOC}), "application/json", 422, "documents"),
    ("numbers as documents", "/rerank", j({"query": "q", "documents": [1, 2]}), "application/json", 422, "documents.0"),
    ("null document", "/rerank", j({"query": "q", "documents": [DOC, None]}), "application/json", 422, "documents.1"),
    ("object without text", "/rerank", j({"query": "q", "documents": [{"id": "x"}]}), "application/json", 422, "documents.0"),
    ("text not a string", "/rerank", j({"query": "q", "documents": [{"text": 5}]}), "application/json", 422, "documents.0"),
    ("unknown document field", "/rerank", j({"query": "q", "documents": [{"text": "a", "colour": 1}]}), "application/json", 422, "documents.0"),
    ("nested list document", "/rerank", j({"query": "q", "documents": [["a"]]}), "application/json", 422, "documents.0"),
    ("top_n zero", "/rerank", j({**GOOD, "top_n": 0}), "application/json", 422, "top_n"),
    ("top_n negative", "/rerank", j({**GOOD, "top_n": -3}), "application/json", 422, "top_n"),
    ("top_n huge", "/rerank", j({**GOOD, "top_n": 10**12}), "application/json", 422, "top_n"),
    ("top_n float", "/rerank", j({**GOOD, "top_n": 2.5}), "application/json", 422, "top_n"),
    ("top_n string", "/rerank", j({**GOOD, "top_n": "3"}), "application/json", 422, "top_n"),
    ("top_n bool", "/rerank", j({**GOOD, "top_n": True}), "application/json", 422, "top_n"),
    ("top_k and top_n differ", "/rerank", j({**GOOD, "top_n": 1, "top_k": 2}), "application/json", 422, None),
    ("unknown model", "/rerank", j({**GOOD, "model": "gpt-9"}), "application/json", 404, "model"),
    ("model not a string", "/rerank", j({**GOOD, "model": 7}), "application/json", 422, "model"),
    ("bad long_documents", "/rerank", j({**GOOD, "long_documents": "shred"}), "application/json", 422, "long_documents"),
    ("extra top-level field", "/rerank", j({**GOOD, "temperature": 1}), "application/json", 422, "temperature"),
    ("malformed JSON", "/rerank", b'{"query": "q", "documents": [', "application/json", 400, "body"),
    ("JSON array body", "/rerank", j([GOOD]), "application/json", 422, None),
    ("JSON string body", "/rerank", j("rerank this"), "application/json", 422, None),
    ("invalid UTF-8", "/rerank", b'{"query": "\xff\xfe", "documents": ["a"]}', "application/json", 400, None),
    ("deeply nested JSON", "/rerank", b'{"query": "q", "documents": ' + b"[" * 40_000 + b"]" * 40_000 + b"}", "application/json", 400, None),
    ("wrong content type", "/rerank", j(GOOD), "text/plain", 415, None),
    ("too many documents", "/rerank", j({"query": "q", "documents": ["d"] * 51}), "application/json", 422, "documents"),
    ("very long document", "/rerank", j({"query": "q", "documents": ["x" * 5001]}), "application/json", 422, "documents.0"),
    ("request too many characters", "/rerank", j({"query": "q", "documents": ["y" * 4000] * 16}), "application/json", 422, "documents"),
    ("body over the byte limit", "/rerank", j({"query": "q", "documents": ["z" * 1000] * 120}), "application/json", 413, "body"),
    ("v2 empty documents", "/v2/rerank", j({"model": "default", "query": "q", "documents": []}), "application/json", 422, "documents"),
    ("v2 missing query", "/v2/rerank", j({"model": "default", "documents": [DOC]}), "application/json", 422, "query"),
    ("v2 top_n zero", "/v2/rerank", j({"model": "default", "query": "q", "documents": [DOC], "top_n": 0}), "application/json", 422, "top_n"),
    ("v2 unknown model", "/v2/rerank", j({"model": "rerank-v9", "query": "q", "documents": [DOC]}), "application/json", 404, "model"),
    ("v1 return_documents not bool", "/v1/rerank", j({"query": "q", "documents": [DOC], "return_documents": "yes"}), "application/json", 422, "return_documents"),
    ("v1 document object without text", "/v1/rerank", j({"query": "q", "documents": [{"title": "t"}]}), "application/json", 422, "documents.0"),
]


def assert_clean_error(resp: requests.Response, status: int, field: str | None) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["type"] and error["message"] and error["request_id"]
    if field is not None:
        assert error.get("field") == field, error
    for leak in ("Traceback", "File \"", "pydantic", "ray.", "Exception"):
        assert leak not in resp.text, resp.text[:500]


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "field"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_request_is_a_clean_4xx(
    app: ServedApp, path: str, body: bytes, ctype: str, status: int, field: str | None
) -> None:
    resp = requests.post(app.url + path, data=body, headers={"Content-Type": ctype}, timeout=60)
    assert_clean_error(resp, status, field)
    good = app.post("/rerank", GOOD)
    assert good.status_code == 200 and good.json()["results"][0]["index"] == 0


def test_body_over_limit_without_content_length(app: ServedApp) -> None:
    def chunks():  # chunked transfer: no Content-Length to refuse it by
        yield b'{"query": "q", "documents": ['
        for _ in range(200):
            yield b'"' + b"w" * 1000 + b'",'
        yield b'"w"]}'

    resp = requests.post(
        app.url + "/rerank", data=chunks(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert_clean_error(resp, 413, "body")


def test_control_characters_and_null_bytes_are_scored(app: ServedApp) -> None:
    resp = app.post(
        "/rerank", {"query": "cat\x00 purr\x07", "documents": ["the cat\x00 will purr\x1b", "rocket\x00"]}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["index"] == 0


def test_wrong_method_and_unknown_path(app: ServedApp) -> None:
    assert_clean_error(app.get("/rerank"), 405, None)
    assert_clean_error(app.post("/nowhere", GOOD), 404, None)


def test_top_n_larger_than_the_list_means_all(app: ServedApp) -> None:
    body = app.post("/rerank", {**GOOD, "top_n": 40}).json()
    assert len(body["results"]) == 2
