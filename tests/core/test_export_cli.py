"""``rerank-export``: builds the exports of a configuration's onnx/openvino backends, then finds
them up to date."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rerank_core.export import main


def write_config(path: Path, model_dir: Path, cache: Path) -> Path:
    config = {
        "backends": {
            "tiny-onnx": {
                "type": "cross_encoder",
                "model": str(model_dir),
                "runtime": "onnx",
                "quantization": "int8",
                "export_cache_dir": str(cache),
            },
            "tiny-torch": {"type": "cross_encoder", "model": str(model_dir)},
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_export_builds_then_reports_up_to_date(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "service.yaml", tiny_model_dir, tmp_path / "cache")

    assert main(["--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert "[1/1] tiny-onnx: onnx/int8 built in" in first
    assert "tiny-torch" not in first
    [export] = (tmp_path / "cache").glob(f"{tiny_model_dir.name}-onnx-int8-*/model.onnx")
    assert export.is_file()

    assert main(["--config", str(config), "--backend", "tiny-onnx"]) == 0
    assert "[1/1] tiny-onnx: onnx/int8 up to date" in capsys.readouterr().out


def test_export_refuses_a_backend_with_nothing_to_export(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "service.yaml", tiny_model_dir, tmp_path / "cache")
    assert main(["--config", str(config), "--backend", "tiny-torch"]) == 1
    assert "backend 'tiny-torch' has nothing to export (runtime is torch)" in capsys.readouterr().err
    assert main(["--config", str(config), "--backend", "nope"]) == 1
    assert "no backend named 'nope'" in capsys.readouterr().err
