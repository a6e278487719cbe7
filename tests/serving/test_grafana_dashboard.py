"""The Grafana dashboard (k8s/grafana/rerank-service.json) names only metrics, and labels, that the
running service exports to Prometheus."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import requests

from tests.serving.conftest import METRICS_PORT, ServedApp, TenantsApp

DASHBOARD = Path(__file__).resolve().parents[2] / "k8s" / "grafana" / "rerank-service.json"
METRIC = re.compile(r"\b(ray_[a-z0-9_]+)")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")


def wanted() -> dict[str, set[str]]:
    """Metric name -> labels the dashboard's queries group or select it by."""
    out: dict[str, set[str]] = {}
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            labels = {lb.strip() for g in GROUPING.findall(expr) for lb in g.split(",")}
            labels |= {m.split("=")[0].strip("!~ ") for s in SELECTOR.findall(expr) for m in s.split(",")}
            for name in METRIC.findall(expr):
                out.setdefault(name, set()).update(labels - {"le"})
    return out


def exported(text: str) -> dict[str, set[str]]:
    """Metric name -> label names of its series in a Prometheus scrape."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        name = name.split(" ")[0]
        labels = set(re.findall(r'([a-zA-Z_]+)="', rest.split("}")[0])) if rest else set()
        out.setdefault(name, set()).update(labels)
    return out


def test_every_metric_the_dashboard_names_is_exported(app: ServedApp, tenants_app: TenantsApp) -> None:
    for model in ("default", "with-fallback"):
        assert app.post("/rerank", {"query": "q", "documents": ["a", "b"], "model": model}).ok
    # A tenant's refusal, so that the refusals metric has a series.
    refused = tenants_app.post("restricted", {"query": "q", "documents": ["a"], "model": "other"})
    assert refused.status_code == 403
    need = wanted()
    assert {"ray_rerank_requests_total", "ray_rerank_fallbacks_total"} <= set(need)
    missing: dict[str, set[str]] = dict(need)
    deadline = time.monotonic() + 90
    # Ray exports metrics every few seconds: wait until each has been exported once.
    while missing and time.monotonic() < deadline:
        have = exported(requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text)
        missing = {n: labels - have.get(n, set()) for n, labels in need.items()
                   if n not in have or not labels <= have[n]}  # fmt: skip
        if missing:
            time.sleep(2)
    assert not missing, f"named by the dashboard but not exported (metric: missing labels): {missing}"
