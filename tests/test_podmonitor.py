"""k8s/podmonitor.yaml against the Prometheus Operator's PodMonitor CRD (as tests/test_k8s.py
validates rayservice.yaml), and against the Pods of k8s/rayservice.yaml it must select and scrape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.k8s_schema import assert_rejected, load_crd_schema, schema_errors
from tests.test_k8s import MANIFEST, groups, ray_container

PODMONITOR = MANIFEST.parent / "podmonitor.yaml"
PODMONITOR_CRD = "monitoring.coreos.com_podmonitors.yaml"
#: Ray's metrics export port as KubeRay sets it by default.
METRICS_PORT = 8080


@pytest.fixture(scope="module")
def podmonitor() -> dict[str, Any]:
    return yaml.safe_load(PODMONITOR.read_text())


@pytest.fixture(scope="module")
def validator(k8s_schemas: Path, podmonitor: dict[str, Any]) -> jsonschema.Draft4Validator:
    return load_crd_schema(k8s_schemas / PODMONITOR_CRD, podmonitor["apiVersion"]).validator


def test_podmonitor_is_valid(validator: jsonschema.Draft4Validator, podmonitor: dict[str, Any]) -> None:
    assert podmonitor["kind"] == "PodMonitor"
    assert schema_errors(validator, podmonitor) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "podMetricsEndpoints", 0, "port"), 8080),
        (("spec", "podMetricsEndpoints", 0, "portt"), "metrics"),
        (("spec", "selector", "matchLabels"), ["ray.io/is-ray-node"]),
        (("spec", "podMetricsEndpoints", 0, "relabelings", 0, "sourceLabels"), "one-label"),
    ],
)
def test_a_broken_podmonitor_is_rejected(
    validator: jsonschema.Draft4Validator, podmonitor: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    assert_rejected(validator, podmonitor, path, value)


def test_podmonitor_scrapes_every_pod_of_the_rayservice(podmonitor: dict[str, Any]) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    labels = podmonitor["spec"]["selector"]["matchLabels"]
    assert labels["ray.io/originated-from-cr-name"] == manifest["metadata"]["name"]
    (endpoint,) = podmonitor["spec"]["podMetricsEndpoints"]
    for name, group in groups(manifest):
        ports = {p.get("name"): p["containerPort"] for p in ray_container(group)["ports"]}
        assert ports.get(endpoint["port"]) == METRICS_PORT, name
        export_port = group["rayStartParams"].get("metrics-export-port", str(METRICS_PORT))
        assert export_port == str(METRICS_PORT), name
