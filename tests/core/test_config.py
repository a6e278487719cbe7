"""Configuration: validation names the bad field; secrets stay out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rerank_core.config import CohereConfig, ConfigError, load_app_args, load_config
from rerank_core.errors import UnknownModel

REPO = Path(__file__).resolve().parents[2]


def minimal(**extra: object) -> dict:
    data = {"backends": {"minilm": {"type": "bi_encoder"}, "co": {"type": "cohere"}}}
    data.update(extra)
    return data


def test_serve_config_default_validates() -> None:
    doc = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    service = load_app_args(doc["applications"][0]["args"])
    assert service.resolve_route(None)[0] == "default"
    assert service.backends["minilm"].type == "bi_encoder"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"backends": {"x": {"type": "cohere", "timeout_s": -1}}}, "backends.x.cohere.timeout_s"),
        ({"backends": {"x": {"type": "nope"}}}, "backends.x"),
        ({"backends": {"x": {"type": "bi_encoder", "batch_sise": 3}}}, "batch_sise"),
        (minimal(routes={"r": {"backends": ["missing"]}}), "unknown backend 'missing'"),
        (minimal(routes={"r": {"backends": []}}), "routes.r.backends"),
        (minimal(default_route="nowhere"), "default_route 'nowhere'"),
        (minimal(limits={"max_documents": 0}), "limits.max_documents"),
        (
            {"backends": {"x": {"type": "bi_encoder", "serving": {"min_replicas": 3, "max_replicas": 2}}}},
            "min_replicas",
        ),
        (
            {"backends": {"x": {"type": "bi_encoder", "serving": {"resources": {"CPU": 1}}}}},
            "backends.x.bi_encoder.serving.resources",
        ),
        (minimal(router={"resources": {"head_node": 0}}), "router.resources.head_node"),
        (
            minimal(
                backends={
                    "x": {
                        "type": "bi_encoder",
                        "serving": {
                            "max_replicas": 2,
                            "target_ongoing_requests": 16,
                            "max_ongoing_requests": 8,
                        },
                    }
                }
            ),
            "target_ongoing_requests (16) must not exceed max_ongoing_requests (8)",
        ),
    ],
)
def test_bad_field_is_named(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert field in str(info.value)


def test_yaml_file_and_unknown_route(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal(routes={"main": {"backends": ["co", "minilm"]}})))
    service = load_config(path)
    assert service.resolve_route("main")[1].backends == ["co", "minilm"]
    assert service.resolve_route("minilm")[1].backends == ["minilm"]
    with pytest.raises(UnknownModel) as info:
        service.resolve_route("gpt-5")
    assert info.value.code == "unknown_model" and info.value.field == "model"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_secret_from_env_and_file_never_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = CohereConfig(api_key_env="TEST_CO_KEY")
    monkeypatch.delenv("TEST_CO_KEY", raising=False)
    assert cfg.api_key() is None
    monkeypatch.setenv("TEST_CO_KEY", "sk-env-secret-123")
    key = cfg.api_key()
    assert key is not None and key.get_secret_value() == "sk-env-secret-123"
    assert "sk-env-secret-123" not in repr(key) and "sk-env-secret-123" not in repr(cfg)
    secret_file = tmp_path / "key"
    secret_file.write_text("sk-file-secret-456\n")
    from_file = CohereConfig(api_key_env="TEST_CO_KEY", api_key_file=str(secret_file)).api_key()
    assert from_file is not None and from_file.get_secret_value() == "sk-file-secret-456"


def test_app_args_from_a_file_or_inline(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    assert set(load_app_args({"config_file": str(path)}).backends) == {"minilm", "co"}
    assert set(load_app_args({"service": minimal()}).backends) == {"minilm", "co"}
    with pytest.raises(ConfigError, match=r"service .* or config_file"):
        load_app_args({"servce": minimal()})
