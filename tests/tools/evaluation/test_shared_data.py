"""The evaluation on the shared relevance data (``../shared/data``), against its reference figures.

The trec-dl20 run embeds 5,400 passages with the packaged all-MiniLM-L6-v2 (minutes on 2 CPU
cores, hence its own timeout); the scifact one reranks a handful of queries only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_tools.evaluation import cli
from rerank_tools.evaluation.loaders import load_named
from rerank_tools.evaluation.metrics import evaluate_run, relevance_threshold

pytestmark = pytest.mark.shared_data


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert cli.main([*args, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.timeout(1500)
def test_trec_dl20_packaged_bi_encoder_matches_the_reference(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = _run_cli(
        ["--dataset", "trec-dl20", "--data-dir", str(shared_data), "--output-dir", str(tmp_path)],
        capsys,
    )
    assert summary["queries"] == 54 and summary["pairs"] == 5400
    assert summary["rel_threshold"] == 2
    assert summary["ndcg@10"] == pytest.approx(0.608, abs=0.005)
    first = summary["first_stage"]
    assert first["ndcg@10"] == pytest.approx(0.4796, abs=0.00005)  # type: ignore[index]
    assert first["mrr@10"] == pytest.approx(0.6533, abs=0.00005)  # type: ignore[index]
    # Reranking the same 100 candidates cannot change recall at 100.
    assert summary["recall@100"] == pytest.approx(first["recall@100"])  # type: ignore[index]
    assert len((tmp_path / "run.trec").read_text().splitlines()) == 5400


def test_scifact_bm25_reference_and_a_few_reranked_queries(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = load_named("scifact", shared_data)
    assert len(dataset.queries) == 300
    assert all(len(q.candidates) == 100 for q in dataset.queries)
    rel = relevance_threshold(dataset.qrels)
    assert rel == 1  # binary judgments
    bm25 = evaluate_run(dataset.first_stage_run(), dataset.qrels, rel)
    assert bm25["ndcg@10"] == pytest.approx(0.676, abs=0.0005)
    assert bm25["mrr@10"] == pytest.approx(0.641, abs=0.0005)

    summary = _run_cli(
        [
            *("--dataset", "scifact", "--data-dir", str(shared_data), "--max-queries", "4"),
            *("--top-k", "10", "--output-dir", str(tmp_path)),
        ],
        capsys,
    )
    assert summary["queries"] == 4 and summary["pairs"] == 40
    assert 0.0 <= summary["ndcg@10"] <= 1.0  # type: ignore[operator]
    assert summary["first_stage"]["queries"] == 4  # type: ignore[index]
