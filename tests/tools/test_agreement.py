"""``rerank-agreement``: Kendall tau-b, and one real run over every runtime on a small dataset in
the trec-dl20 layout (the tiny cross-encoder as the benchmark model, the packaged bi-encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_tools.agreement import kendall_tau_b, main
from tests.tiny_models import EXAMPLES


def test_kendall_tau_b_counts_pairs_and_ties() -> None:
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # One discordant pair of six.
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # A tie in the first list: tau-b divides by sqrt(untied pairs of each list).
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 6**0.5)
    assert kendall_tau_b([5, 5, 5], [5, 5, 5]) == 1.0


def write_dl20(root: Path) -> Path:
    """The tiny model's examples as ``<root>/trec-dl20``: candidates and qrels (relevant: 1)."""
    folder = root / "trec-dl20"
    folder.mkdir(parents=True)
    rows, qrels = [], []
    for n, e in enumerate(EXAMPLES):
        docs = [e.relevant, *e.irrelevant]
        rows.append(
            {
                "qid": str(n),
                "query": e.query,
                "candidates": [{"docid": f"{n}-{i}", "text": t} for i, t in enumerate(docs)],
            }
        )
        qrels += [f"{n} 0 {n}-{i} {1 if i == 0 else 0}" for i in range(len(docs))]
    (folder / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return root


def test_agreement_reports_every_runtime_against_torch(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dl20(tmp_path / "data")
    output = tmp_path / "agreement.json"
    status = main(
        [
            *("--data-dir", str(data), "--bench-model-dir", str(tiny_model_dir)),
            *("--queries", "3", "--cross-encoder-queries", "2", "--threads", "1"),
            *("--export-cache-dir", str(tmp_path / "exports"), "--output", str(output)),
        ]
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result == json.loads(output.read_text())
    assert status == (0 if result["ok"] else 1)
    assert (result["bi_encoder_queries"], result["cross_encoder_queries"]) == (3, 2)
    # The packaged bi-encoder ranks each example's relevant document first.
    assert result["reference"]["bi_encoder"]["ndcg@10"] == pytest.approx(1.0)
    rows = {r["label"]: r for r in result["runtimes"]}
    assert list(rows) == [
        "torch-bf16",
        "onnx",
        "onnx-int8",
        "openvino",
        "openvino-bf16",
        "openvino-int8",
        "openvino-int8-static",
    ]
    assert (rows["torch-bf16"]["runtime"], rows["torch-bf16"]["cpu_dtype"]) == ("torch", "bfloat16")
    assert rows["openvino-int8"]["quantization"] == "int8"
    for label, row in rows.items():
        assert row["bi_encoder_ok"] == (abs(row["bi_encoder_ndcg_delta"]) <= 0.005)
        assert row["cross_encoder_ok"] == (row["cross_encoder_mean_kendall_tau"] >= 0.98)
        if label in ("onnx", "openvino"):
            # fp32 exports reproduce torch: the same order and scores to float rounding.
            assert row["bi_encoder_ndcg_delta"] == 0.0
            assert row["cross_encoder_mean_kendall_tau"] == 1.0
            assert row["cross_encoder_max_abs_score_diff"] < 1e-4
        elif label.endswith("bf16"):
            # bfloat16 rounds the scores to about 3 significant digits.
            assert row["cross_encoder_max_abs_score_diff"] < 0.1
    assert "onnx-int8" in captured.err and "nDCG@10" in captured.err


def test_a_missing_bench_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--bench-model-dir", str(tmp_path / "absent")])
    assert "build it with rerank-bench-model" in capsys.readouterr().err


def test_one_runtime_with_its_own_calibration_text(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dl20(tmp_path / "data")
    calibration = tmp_path / "calibration.jsonl"
    rows = [{"query": e.query, "documents": [e.relevant, *e.irrelevant]} for e in EXAMPLES]
    calibration.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exports = tmp_path / "exports"
    main(
        [
            *("--data-dir", str(data), "--bench-model-dir", str(tiny_model_dir)),
            *("--queries", "2", "--threads", "1", "--export-cache-dir", str(exports)),
            *("--runtimes", "openvino-int8-static", "--calibration-file", str(calibration)),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in result["runtimes"]] == ["openvino-int8-static"]
    # only the static exports were built: the bi-encoder's and the cross-encoder's
    manifests = [json.loads(p.read_text()) for p in exports.glob("*/export.json")]
    assert {m["quantization"] for m in manifests} == {"int8-static"}


def test_an_unknown_runtime_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--runtimes", "openvino,tensorrt", "--bench-model-dir", str(tmp_path)])
    assert info.value.code == 2
    assert "--runtimes: unknown tensorrt" in capsys.readouterr().err
