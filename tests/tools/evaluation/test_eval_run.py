"""The evaluation end to end on a tiny dataset: in-process (a Backend of this test, and the CLI
with a configured tiny cross-encoder) and over HTTP (the CLI against the stub service)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from rerank_core.backends.base import Backend
from rerank_core.types import Answer, RankRequest, Scored, top_n_of
from rerank_tools.evaluation import cli
from rerank_tools.evaluation.loaders import load_candidates, read_trec_run
from rerank_tools.evaluation.report import summarize, write_outputs
from rerank_tools.evaluation.rerankers import InProcessReranker, rerank_dataset
from tests.stubs.stub_service import build_stub_app, overlap_score, serve_in_thread
from tests.tiny_models import EXAMPLES, build_tiny_cross_encoder


class OverlapBackend(Backend):
    """Scores a document by the share of the query's words it contains."""

    name = "overlap"

    async def answer(self, request: RankRequest) -> Answer:
        scored = [Scored(i, overlap_score(request.query, d)) for i, d in enumerate(request.documents)]
        return Answer(top_n_of(scored, request.top_n))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """The tiny model's examples as a dataset: the relevant document last in first-stage order
    (so the first stage scores nDCG@10 1/log2(5) and MRR@10 1/4), judged 1; the others judged 0."""
    lines, qrels = [], []
    for n, example in enumerate(EXAMPLES):
        docs = [*example.irrelevant, example.relevant]
        candidates = [{"docid": f"q{n}d{i}", "text": t} for i, t in enumerate(docs)]
        lines.append(json.dumps({"qid": f"q{n}", "query": example.query, "candidates": candidates}))
        qrels += [f"q{n} 0 q{n}d{i} {int(i == len(docs) - 1)}" for i in range(len(docs))]
    (tmp_path / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return tmp_path / "candidates.jsonl", tmp_path / "qrels.txt"


FIRST_STAGE_NDCG = 1 / math.log2(5)


def test_in_process_with_a_backend(tiny_dataset: tuple[Path, Path], tmp_path: Path) -> None:
    dataset = load_candidates(*tiny_dataset, name="tiny")
    outcomes = asyncio.run(
        rerank_dataset(dataset, InProcessReranker(OverlapBackend()), concurrency=2, progress=False)
    )
    assert [o.qid for o in outcomes] == [q.qid for q in dataset.queries]
    assert all(o.latency_s >= 0 for o in outcomes)
    summary = summarize(dataset, outcomes, mode="in-process", backend="overlap")
    # Each relevant document holds every word of its query; no irrelevant one holds any.
    assert summary["ndcg@10"] == pytest.approx(1.0)
    assert summary["mrr@10"] == pytest.approx(1.0)
    assert summary["first_stage"]["ndcg@10"] == pytest.approx(FIRST_STAGE_NDCG)
    assert summary["first_stage"]["mrr@10"] == pytest.approx(0.25)
    assert summary["rel_threshold"] == 1
    assert summary["queries"] == len(EXAMPLES)
    assert summary["pairs"] == 4 * len(EXAMPLES)
    written = write_outputs(tmp_path / "out", summary, outcomes)
    run = read_trec_run(written["run_file"])
    assert run["q0"][0][0] == "q0d3"
    assert json.loads(Path(written["summary_file"]).read_text())["ndcg@10"] == pytest.approx(1.0)


def _last_json_line(out: str) -> dict[str, object]:
    return json.loads(out.strip().splitlines()[-1])


def test_cli_in_process_with_a_configured_cross_encoder(
    tiny_dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_tiny_cross_encoder(tmp_path / "tiny-ce")
    config = tmp_path / "config.yaml"
    config.write_text(f"backends:\n  tiny:\n    type: cross_encoder\n    model: {model}\n")
    candidates, qrels = tiny_dataset
    args = ["--candidates", str(candidates), "--qrels", str(qrels), "--no-progress"]
    args += ["--backend-config", str(config), "--backend", "tiny"]
    args += ["--output-dir", str(tmp_path / "out"), "--recall-k", "1,4"]
    assert cli.main(args) == 0
    summary = _last_json_line(capsys.readouterr().out)
    assert summary["mode"] == "in-process" and summary["backend"] == "tiny"
    assert summary["ndcg@10"] == pytest.approx(1.0)
    assert summary["mrr@10"] == pytest.approx(1.0)
    assert summary["recall@1"] == pytest.approx(1.0)
    assert summary["first_stage"]["ndcg@10"] == pytest.approx(FIRST_STAGE_NDCG)  # type: ignore[index]
    assert summary["first_stage"]["recall@1"] == 0.0  # type: ignore[index]
    assert (tmp_path / "out" / "run.trec").is_file()
    assert set(summary["latency"]) == {"mean_ms", "p50_ms", "p95_ms"}  # type: ignore[arg-type]


def test_cli_over_http(
    tiny_dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidates, qrels = tiny_dataset
    with serve_in_thread(build_stub_app()) as url:
        code = cli.main(
            [
                *("--candidates", str(candidates), "--qrels", str(qrels), "--url", url),
                *("--model", "overlap", "--concurrency", "3", "--output-dir", str(tmp_path / "o")),
            ]
        )
    assert code == 0
    summary = _last_json_line(capsys.readouterr().out)
    assert summary["mode"] == "http" and summary["answered_by"] == ["overlap"]
    assert summary["ndcg@10"] == pytest.approx(1.0)
    assert summary["first_stage"]["mrr@10"] == pytest.approx(0.25)  # type: ignore[index]


def test_cli_reports_service_errors_and_bad_usage(
    tiny_dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidates, qrels = tiny_dataset
    with serve_in_thread(build_stub_app(api_key="k")) as url:
        code = cli.main(["--candidates", str(candidates), "--qrels", str(qrels), "--url", url])
    assert code == 1
    assert "Unauthorized" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["--candidates", str(candidates)])
    assert info.value.code == 2


def test_cli_judges_a_run_made_elsewhere(
    tiny_dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidates, qrels = tiny_dataset
    # The relevant document (the last candidate) first for every query but q0, where it is second.
    lines = []
    for n in range(len(EXAMPLES)):
        order = [3, 0, 1, 2] if n else [0, 3, 1, 2]
        lines += [f"q{n} Q0 q{n}d{d} {r} {4 - r} batch" for r, d in enumerate(order, start=1)]
    run = tmp_path / "batch.trec"
    run.write_text("\n".join(lines) + "\n")
    args = ["--candidates", str(candidates), "--qrels", str(qrels), "--output-dir", str(tmp_path / "o")]
    assert cli.main([*args, "--scored-run", str(run)]) == 0
    summary = _last_json_line(capsys.readouterr().out)
    assert (summary["mode"], summary["backend"]) == ("scored-run", "batch")
    assert summary["mrr@10"] == pytest.approx((len(EXAMPLES) - 1 + 0.5) / len(EXAMPLES))
    assert summary["first_stage"]["mrr@10"] == pytest.approx(0.25)  # type: ignore[index]
    # A run that lacks a query, or ranks what the query never had, is refused, naming it.
    run.write_text("\n".join(lines[4:]) + "\n")
    assert cli.main([*args, "--scored-run", str(run)]) == 1
    assert "no ranking for query 'q0'" in capsys.readouterr().err
    run.write_text("\n".join([*lines, "q0 Q0 elsewhere 5 0 batch"]) + "\n")
    assert cli.main([*args, "--scored-run", str(run)]) == 1
    assert "ranks 'elsewhere', not one of its candidates" in capsys.readouterr().err
