"""The environment of Ray Serve's ingress modes: the shipped switches, and HAProxy kept to its own
files and ports so several Rays share a machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deployments.ingress import HIGH_THROUGHPUT_ENV
from rerank_tools.ingress_env import ingress_env, main, short_haproxy_dir


def test_haproxy_mode_is_the_shipped_switches_with_its_own_files_and_ports() -> None:
    directory = short_haproxy_dir()
    try:
        env = ingress_env("haproxy", directory)
        assert {k: env[k] for k in HIGH_THROUGHPUT_ENV} == HIGH_THROUGHPUT_ENV
        assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"].startswith(str(directory))
        assert env["RAY_SERVE_HAPROXY_STATS_PORT"] not in ("8404", env["RAY_SERVE_HAPROXY_METRICS_PORT"])
    finally:
        shutil.rmtree(directory)


def test_other_modes_turn_haproxy_off_and_need_no_files(tmp_path: Path) -> None:
    assert ingress_env("proxy", tmp_path / "x")["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"
    direct = ingress_env("direct", tmp_path / "x")
    assert direct["RAY_SERVE_ENABLE_HA_PROXY"] == "0" and direct["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="unknown ingress mode"):
        ingress_env("grpc", tmp_path)


def test_a_folder_too_deep_for_haproxys_socket_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long for HAProxy's admin socket path"):
        ingress_env("haproxy", tmp_path / ("d" * 60))


def test_the_shell_form_exports_each_variable(capsys: pytest.CaptureFixture[str]) -> None:
    main(["proxy", "/tmp/unused"])
    assert "export RAY_SERVE_ENABLE_HA_PROXY=0" in capsys.readouterr().out.splitlines()
