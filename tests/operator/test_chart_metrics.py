"""charts/webrecord: metrics and health. Metrics Services on their own ports (never the
callers' Service), the probes the adapter and the operator answer, the optional ServiceMonitor,
PodMonitor, NetworkPolicy scrape rule and Grafana dashboard (off by default; rendered and
linted both ways), and a dashboard that queries only metrics the code exports."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from opkit import ROOT
from test_chart import CHART, by_kind, env_of, render
from webrecord.controller.pod import labels

pytestmark = pytest.mark.timeout(900)  # the first chart test may build helm

ON = ["metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true",
      "metrics.dashboard.enabled=true", "metrics.serviceMonitor.labels.release=prom",
      "metrics.scrapeFrom[0].namespaceSelector.matchLabels.team=monitoring"]


def _dashboard_maps(docs: list[dict]) -> list[dict]:
    return [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")]


def test_default_render_serves_metrics_and_probes(helm: str) -> None:
    docs = render(helm, "wr")
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert not _dashboard_maps(docs)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert services["rel-webrecord-operator-metrics"]["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    assert services["rel-webrecord-adapter-metrics"]["spec"]["ports"] == [
        {"name": "metrics", "port": 9091, "targetPort": "metrics"}]
    assert [p["name"] for p in services["rel-webrecord-adapter"]["spec"]["ports"]] == ["http"]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment")}
    [adapter] = pods["rel-webrecord-adapter"]["containers"]
    assert "--metrics-port=9091" in adapter["args"]
    assert {p["name"]: p["containerPort"] for p in adapter["ports"]} == {"http": 8080, "metrics": 9091}
    assert adapter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert adapter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert env_of(adapter)["WEBRECORD_ADAPTER_DRAIN_SECONDS"] == "20"
    assert pods["rel-webrecord-adapter"]["terminationGracePeriodSeconds"] == 30
    [operator] = pods["rel-webrecord-operator"]["containers"]
    assert env_of(operator)["WEBRECORD_OPERATOR_METRICS_PORT"] == "9090"
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"health": 8080,
                                                                          "metrics": 9090}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_monitors_and_dashboard_render_when_enabled(helm: str) -> None:
    lint = subprocess.run([helm, "lint", "--strict", str(CHART), "--set", ",".join(ON)],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(helm, "wr", *ON)
    [service_monitor] = by_kind(docs, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "prom"
    wanted = service_monitor["spec"]["selector"]["matchLabels"].items()
    selected = [s for s in by_kind(docs, "Service") if wanted <= s["metadata"]["labels"].items()]
    assert sorted(s["metadata"]["name"] for s in selected) == [
        "rel-webrecord-adapter-metrics", "rel-webrecord-operator-metrics"]
    assert {p["name"] for s in selected for p in s["spec"]["ports"]} == {
        service_monitor["spec"]["endpoints"][0]["port"]}
    [pod_monitor] = by_kind(docs, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= labels("wr-x").items()
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["wr"]}
    assert pod_monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "control", "path": "/metrics", "interval": "15s"}]
    [policy] = by_kind(docs, "NetworkPolicy")
    assert {"from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 8090}]} in policy["spec"]["ingress"]
    [dashboard] = _dashboard_maps(docs)
    shipped = json.loads((CHART / "dashboards" / "webrecord.json").read_text())
    assert json.loads(dashboard["data"]["webrecord.json"]) == shipped
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    everywhere = render(helm, "wr", *ON, "watchAllNamespaces=true")
    assert by_kind(everywhere, "PodMonitor")[0]["spec"]["namespaceSelector"] == {"any": True}


def test_dashboard_queries_only_exported_metrics() -> None:
    """Every metric a panel queries is one the code defines (by its literal name)."""
    source = "".join(p.read_text() for p in (ROOT / "operator" / "webrecord").rglob("*.py"))
    dashboard = json.loads((CHART / "dashboards" / "webrecord.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs
             for n in re.findall(r"webrecord_[a-z_]+", e)}
    assert len(names) >= 15
    assert sorted(n for n in names if f'"{n}"' not in source) == []
