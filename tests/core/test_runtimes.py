"""The onnx and openvino runtimes: the export cache, and scores that agree with torch.

Real exports of the tiny cross-encoder and of the packaged all-MiniLM-L6-v2 bi-encoder, loaded by
the real runtimes; every export goes to a temporary directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from rerank_core.backends import build_backend
from rerank_core.backends.bi_encoder import BiEncoderBackend
from rerank_core.backends.calibration import calibration_pairs
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.backends.exports import cpu_has_int8_dot, read_manifest
from rerank_core.backends.local import cpu_has_bf16
from rerank_core.config import BiEncoderConfig, ConfigError, CrossEncoderConfig, load_config
from tests.tiny_models import EXAMPLES

RUNTIMES = [
    ("onnx", "none"),
    ("onnx", "int8"),
    ("openvino", "none"),
    ("openvino", "int8"),
    ("openvino", "int8-static"),
]
PAIRS = [(e.query, doc) for e in EXAMPLES for doc in (e.relevant, *e.irrelevant)]


def cross_encoder(model_dir: Path, **over: Any) -> CrossEncoderBackend:
    backend = build_backend("tiny", CrossEncoderConfig(model=str(model_dir), **over))
    assert isinstance(backend, CrossEncoderBackend)
    return backend


def per_query_order(scores: list[float]) -> list[list[int]]:
    """Each example's documents, best first, as indices into that example's documents."""
    orders, start = [], 0
    for example in EXAMPLES:
        n = 1 + len(example.irrelevant)
        chunk = scores[start : start + n]
        orders.append(sorted(range(n), key=lambda i: -chunk[i]))
        start += n
    return orders


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def torch_scores(tiny_model_dir: Path) -> list[float]:
    return cross_encoder(tiny_model_dir).score_pairs(PAIRS)


def test_int8_with_torch_is_refused_naming_the_fields() -> None:
    backend = {"type": "cross_encoder", "model": "m", "quantization": "int8"}
    with pytest.raises(ConfigError) as info:
        load_config({"backends": {"ce": backend}})
    assert "backends.ce" in info.value.message
    assert "quantization 'int8' needs runtime 'onnx' or 'openvino'" in info.value.message


def test_an_exported_runtime_on_cuda_is_refused() -> None:
    backend = {"type": "bi_encoder", "runtime": "openvino", "device": "cuda"}
    with pytest.raises(ConfigError, match="runtime 'openvino' runs on CPU: device must be"):
        load_config({"backends": {"bi": backend}})


def test_the_defaults_are_torch_without_quantization() -> None:
    config = CrossEncoderConfig(model="m")
    assert (config.runtime, config.quantization, config.export_cache_dir) == ("torch", "none", None)


@pytest.mark.parametrize(("runtime", "quantization"), RUNTIMES)
def test_each_runtime_ranks_the_tiny_model_as_torch_does(
    tiny_model_dir: Path, tmp_path: Path, torch_scores: list[float], runtime: str, quantization: str
) -> None:
    over: dict[str, Any] = {}
    if quantization == "int8-static":  # calibrated on text like its traffic, as users should
        over["calibration_file"] = str(tmp_path / "calibration.jsonl")
        rows = [{"query": e.query, "documents": [e.relevant, *e.irrelevant]} for e in EXAMPLES]
        (tmp_path / "calibration.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    backend = cross_encoder(
        tiny_model_dir, runtime=runtime, quantization=quantization, export_cache_dir=str(tmp_path), **over
    )
    scores = backend.score_pairs(PAIRS)
    diff = max(abs(a - b) for a, b in zip(scores, torch_scores, strict=True))
    if quantization == "none":  # fp32 runtimes reproduce torch's logits, and so its order
        assert per_query_order(scores) == per_query_order(torch_scores)
        assert diff < 1e-4
    else:
        # int8 moves the logits a little: the relevant document stays first, while the tiny
        # model's irrelevant ones, a few hundredths of a logit apart, may swap. On a CPU whose
        # int8 sums saturate (no VNNI or AMX), static int8 moves them further (0.77 on an
        # AVX2-only CPU), still keeping every relevant document first.
        assert [order[0] for order in per_query_order(scores)] == [0] * len(EXAMPLES)
        saturating = quantization == "int8-static" and not cpu_has_int8_dot()
        assert diff < (1.0 if saturating else 0.25), diff


def test_the_export_is_built_once_then_reused_and_rebuilt_when_the_weights_change(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, source)

    first = cross_encoder(source, runtime="onnx")
    assert first.exported is not None
    info = first.exported.info
    # No export_cache_dir: the export lies beside the (writable) model directory.
    assert info.directory == tmp_path / "tiny.exports" / "tiny-onnx-none"
    assert info.built
    manifest = read_manifest(info.directory)
    assert manifest is not None and manifest["fingerprint"] == info.fingerprint
    exported_file = sha256(info.model_file)

    second = cross_encoder(source, runtime="onnx")
    assert second.exported is not None
    assert not second.exported.info.built
    assert second.exported.info.fingerprint == info.fingerprint
    assert sha256(info.model_file) == exported_file

    # New weights under the same path: the stale export must not be served.
    from safetensors.torch import load_file, save_file

    weights = load_file(source / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})

    third = cross_encoder(source, runtime="onnx")
    assert third.exported is not None
    assert third.exported.info.built
    assert third.exported.info.fingerprint != info.fingerprint
    assert json.loads((info.directory / "export.json").read_text())["fingerprint"] == (
        third.exported.info.fingerprint
    )
    assert sha256(info.model_file) != exported_file
    expected = cross_encoder(source).score_pairs(PAIRS)
    assert third.score_pairs(PAIRS) == pytest.approx(expected, abs=1e-4)


def test_runtime_and_quantization_get_exports_of_their_own(tiny_model_dir: Path, tmp_path: Path) -> None:
    plain = cross_encoder(tiny_model_dir, runtime="onnx", export_cache_dir=str(tmp_path))
    int8 = cross_encoder(tiny_model_dir, runtime="onnx", quantization="int8", export_cache_dir=str(tmp_path))
    assert plain.exported is not None and int8.exported is not None
    assert plain.exported.info.directory.parent == int8.exported.info.directory.parent == tmp_path
    assert plain.exported.info.directory != int8.exported.info.directory
    assert plain.exported.info.fingerprint != int8.exported.info.fingerprint


@pytest.fixture(scope="module")
def bi_torch_scores() -> list[float]:
    backend = build_backend("minilm", BiEncoderConfig())
    assert isinstance(backend, BiEncoderBackend)
    return backend.score_pairs(PAIRS)


@pytest.mark.parametrize(("runtime", "quantization"), RUNTIMES)
def test_the_packaged_bi_encoder_ranks_as_torch_does(
    tmp_path: Path, bi_torch_scores: list[float], runtime: str, quantization: str
) -> None:
    config = BiEncoderConfig(runtime=runtime, quantization=quantization, export_cache_dir=str(tmp_path))
    backend = build_backend("minilm", config)
    assert isinstance(backend, BiEncoderBackend)
    scores = backend.score_pairs(PAIRS)
    if quantization == "none":
        assert per_query_order(scores) == per_query_order(bi_torch_scores)
    else:
        # int8 may swap two irrelevant documents whose cosines are close; the relevant one
        # stays first, as with torch.
        assert [order[0] for order in per_query_order(scores)] == [0] * len(EXAMPLES)
        assert [order[0] for order in per_query_order(bi_torch_scores)] == [0] * len(EXAMPLES)
    bound = 1e-4 if quantization == "none" else 0.05
    assert max(abs(a - b) for a, b in zip(scores, bi_torch_scores, strict=True)) < bound


def test_bfloat16_on_cpu_is_refused_where_it_does_not_apply() -> None:
    with pytest.raises(ValidationError, match="cpu_dtype 'bfloat16' needs runtime 'torch' or 'openvino'"):
        CrossEncoderConfig(model="m", runtime="onnx", cpu_dtype="bfloat16")
    with pytest.raises(ValidationError, match="with quantization 'none'"):
        BiEncoderConfig(runtime="openvino", quantization="int8", cpu_dtype="bfloat16")
    assert CrossEncoderConfig(model="m").cpu_dtype == "float32"


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_bfloat16_on_cpu_ranks_as_float32_does_from_the_same_export(
    tiny_model_dir: Path, tmp_path: Path, torch_scores: list[float], runtime: str
) -> None:
    exports = tmp_path / "exports"
    backend = cross_encoder(
        tiny_model_dir, runtime=runtime, cpu_dtype="bfloat16", export_cache_dir=str(exports)
    )
    assert backend.cpu_bf16 and backend.device == "cpu"
    scores = backend.score_pairs(PAIRS)
    assert per_query_order(scores) == per_query_order(torch_scores)
    diff = max(abs(a - b) for a, b in zip(scores, torch_scores, strict=True))
    # bfloat16 keeps about 3 significant digits: the scores move, a little, and by more than
    # float32's rounding (the 1e-4 bound below). OpenVINO computes in float32 where the CPU has
    # no bfloat16, so only torch's emulation always rounds.
    assert diff < 0.1
    if runtime == "torch" or cpu_has_bf16():
        assert diff > 1e-4
    if runtime == "openvino":
        # The export is the float32 one: precision is chosen when it is loaded, not exported.
        float32 = cross_encoder(tiny_model_dir, runtime="openvino", export_cache_dir=str(exports))
        assert float32.exported is not None and backend.exported is not None
        assert float32.exported.info.model_file == backend.exported.info.model_file
        assert len(list(exports.iterdir())) == 1
        fp32_scores = float32.score_pairs(PAIRS)
        assert max(abs(a - b) for a, b in zip(fp32_scores, torch_scores, strict=True)) < 1e-4


def test_the_packaged_bi_encoder_in_bfloat16_keeps_the_relevant_first(tmp_path: Path) -> None:
    for runtime in ("torch", "openvino"):
        config = BiEncoderConfig(runtime=runtime, cpu_dtype="bfloat16", export_cache_dir=str(tmp_path))
        scores = build_backend("minilm", config).score_pairs(PAIRS)
        assert [order[0] for order in per_query_order(scores)] == [0] * len(EXAMPLES)


def test_health_check_and_relevance_work_in_an_exported_runtime(tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = cross_encoder(tiny_model_dir, runtime="openvino", export_cache_dir=str(tmp_path))
    backend.health_check()
    raw = backend.score_pairs(PAIRS[:1])[0]
    assert backend.to_relevance(raw) == pytest.approx(float(torch.sigmoid(torch.tensor(raw))))


def test_static_int8_needs_openvino_and_takes_its_calibration_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'int8-static' needs runtime 'openvino'"):
        CrossEncoderConfig(model="m", runtime="onnx", quantization="int8-static")
    with pytest.raises(ValidationError, match="calibration_file is used only"):
        CrossEncoderConfig(model="m", runtime="openvino", calibration_file="c.jsonl")
    bad = tmp_path / "calibration.jsonl"
    bad.write_text('{"query": "q"}\n')
    with pytest.raises(ConfigError, match="calibration_file: cannot read"):
        calibration_pairs("tiny", str(bad))
    good = tmp_path / "good.jsonl"
    good.write_text('{"query": "q", "documents": ["a", "b"]}\n\n{"query": "r", "documents": ["c"]}\n')
    assert calibration_pairs("tiny", str(good)) == [("q", "a"), ("q", "b"), ("r", "c")]
    assert len(calibration_pairs("tiny", None)) == 96


def test_a_static_int8_export_is_rebuilt_for_other_calibration_text(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text(
        json.dumps({"query": EXAMPLES[0].query, "documents": list(EXAMPLES[0].irrelevant)})
    )
    over = {"runtime": "openvino", "quantization": "int8-static", "export_cache_dir": str(tmp_path / "x")}
    builtin = cross_encoder(tiny_model_dir, **over)
    own = cross_encoder(tiny_model_dir, calibration_file=str(calibration), **over)
    assert builtin.exported is not None and own.exported is not None
    assert own.exported.info.built and own.exported.info.directory == builtin.exported.info.directory
    assert own.exported.info.fingerprint != builtin.exported.info.fingerprint


def test_streams_need_openvino() -> None:
    with pytest.raises(ValidationError, match="streams 2 needs runtime 'openvino', not 'onnx'"):
        CrossEncoderConfig(model="m", runtime="onnx", streams=2)
    assert CrossEncoderConfig(model="m", streams=1).streams == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenVINO runs one stream on one core")
def test_openvino_streams_run_passes_at_once_and_score_as_one_stream(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    over: dict[str, Any] = {
        "runtime": "openvino",
        "export_cache_dir": str(tmp_path),
        "batch_size": 2,  # a pass of two pairs: one request, several passes
        "batch_cost_tokens": 0,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chosen = cross_encoder(tiny_model_dir, **over)
        one = cross_encoder(tiny_model_dir, streams=1, **over)
        two = cross_encoder(tiny_model_dir, streams=2, **over)
    finally:
        torch.set_num_threads(threads)
    # Left out, the throughput hint's choice: a stream a thread.
    assert (chosen.streams, one.streams, two.streams) == (2, 1, 2)
    assert len(one.prepare(PAIRS).batches) > 2

    # The first two passes of a request wait for each other: they meet only if they run at once.
    assert two.exported is not None
    run, calls, meeting = two.exported._run, itertools.count(), threading.Barrier(2, timeout=10)

    def met(feeds: Any) -> Any:
        if next(calls) < 2:
            meeting.wait()
        return run(feeds)

    two.exported._run = met
    scores = two.score_pairs(PAIRS)
    assert next(calls) > 2
    assert scores == pytest.approx(one.score_pairs(PAIRS), abs=1e-5)
