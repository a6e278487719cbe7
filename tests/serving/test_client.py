"""The Python client and the LangChain compressor against the real Router app (the shared Serve
application of tests/serving: the tiny cross-encoder behind the ``default`` route)."""

from __future__ import annotations

import pytest

from rerank_client import AsyncRerankClient, RerankClient, RerankResponse
from rerank_core.errors import InvalidRequest
from rerank_core.types import Document
from tests.serving.conftest import ServedApp
from tests.tiny_models import EXAMPLES

pytestmark = pytest.mark.serve


def _docs(example: object) -> list[str]:
    return [example.relevant, *example.irrelevant]  # type: ignore[attr-defined]


def test_sync_rerank_ranks_the_relevant_document_first(app: ServedApp) -> None:
    with RerankClient(app.url) as client:
        for example in EXAMPLES:
            response = client.rerank(example.query, _docs(example), top_n=2)
            assert isinstance(response, RerankResponse)
            assert [r.index for r in response.results][:1] == [0]
            assert len(response.results) == 2
            assert response.results[0].document == example.relevant
            assert response.results[0].score >= response.results[1].score
            assert 0.0 <= response.results[1].score <= 1.0
            assert response.backend == "tiny" and response.model == "default"
            assert not response.fallback and not response.degraded


def test_documents_as_objects_keep_id_and_metadata(app: ServedApp) -> None:
    example = EXAMPLES[1]
    docs = [
        Document(example.relevant, id="rel", metadata={"source": "a"}),
        {"text": example.irrelevant[0], "id": "irr"},
    ]
    with RerankClient(app.url) as client:
        response = client.rerank(example.query, docs)
        bare = client.rerank(example.query, docs, return_documents=False)
    assert [(r.id, r.metadata) for r in response.results] == [("rel", {"source": "a"}), ("irr", None)]
    # Without documents, ids and metadata still come back: they say which result is which.
    assert all(r.document is None for r in bare.results)
    assert [(r.id, r.metadata) for r in bare.results] == [("rel", {"source": "a"}), ("irr", None)]


async def test_async_client_rerank_models_and_health(app: ServedApp) -> None:
    example = EXAMPLES[2]
    async with AsyncRerankClient(app.url) as client:
        response = await client.rerank(example.query, _docs(example), model="tiny")
        assert response.results[0].index == 0
        assert len(response.results) == 4
        assert response.model == "tiny" and response.backend == "tiny"
        assert (await client.health())["backends"]["tiny"]["state"] == "ready"
        models = await client.models()
        assert models["default"] == "default" and {"id": "tiny"} in [
            {"id": m["id"]} for m in models["data"]
        ]


def test_validation_error_of_a_real_server_maps_to_invalid_request(app: ServedApp) -> None:
    with RerankClient(app.url) as client, pytest.raises(InvalidRequest) as info:
        client.rerank("", ["a document"])
    assert info.value.field == "query"


def test_langchain_compressor_returns_top_n_with_scores(app: ServedApp) -> None:
    from langchain_core.documents import Document as LCDocument

    from rerank_client.langchain import RerankServiceCompressor

    example = EXAMPLES[3]
    docs = [LCDocument(page_content=t, metadata={"n": i}) for i, t in enumerate(_docs(example))]
    docs.reverse()  # the relevant document last, so the order must come from the service
    compressor = RerankServiceCompressor(base_url=app.url, top_n=2)
    picked = compressor.compress_documents(docs, example.query)
    assert len(picked) == 2
    assert picked[0].page_content == example.relevant
    assert picked[0].metadata["n"] == 0
    scores = [d.metadata["relevance_score"] for d in picked]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert "relevance_score" not in docs[-1].metadata  # the inputs are left untouched
    assert compressor.compress_documents([], example.query) == []


async def test_langchain_compressor_async(app: ServedApp) -> None:
    from langchain_core.documents import Document as LCDocument

    from rerank_client.langchain import RerankServiceCompressor

    example = EXAMPLES[0]
    docs = [LCDocument(page_content=t) for t in reversed(_docs(example))]
    picked = await RerankServiceCompressor(base_url=app.url, top_n=1).acompress_documents(
        docs, example.query
    )
    assert [d.page_content for d in picked] == [example.relevant]


