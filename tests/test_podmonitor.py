"""k8s/podmonitor.yaml against the Prometheus Operator's PodMonitor CRD (as tests/test_k8s.py
validates rayservice.yaml), and against the Pods of k8s/rayservice.yaml it must select and scrape."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.test_k8s import (
    FORMATS,
    MANIFEST,
    crd_version,
    groups,
    k8s_schemas,
    openapi_to_jsonschema,
    ray_container,
    schema_errors,
)

PODMONITOR = MANIFEST.parent / "podmonitor.yaml"
PODMONITOR_CRD = "monitoring.coreos.com_podmonitors.yaml"
#: Ray's metrics export port as KubeRay sets it by default.
METRICS_PORT = 8080
#: Re-exported so pytest finds the fixture shared with test_k8s.py (the KubeRay CRD directory).
__all__ = ["k8s_schemas"]


@pytest.fixture(scope="module")
def podmonitor() -> dict[str, Any]:
    return yaml.safe_load(PODMONITOR.read_text())


@pytest.fixture(scope="module")
def validator(k8s_schemas: Path, podmonitor: dict[str, Any]) -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((k8s_schemas / PODMONITOR_CRD).read_text())
    entry = crd_version(crd, podmonitor["apiVersion"])
    cel: list[tuple[str, ...]] = []
    schema = openapi_to_jsonschema(entry["schema"]["openAPIV3Schema"], cel=cel)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=FORMATS)


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
    broken = copy.deepcopy(podmonitor)
    doc = broken
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value
    where = {tuple(e.absolute_path) for e in validator.iter_errors(broken)}
    assert path in where or path[:-1] in where, where


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
