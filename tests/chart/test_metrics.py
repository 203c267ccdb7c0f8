"""The metrics exporter in the chart (metrics.*): its Deployment reads the API with the
release's auth Secret, its Service, ServiceMonitor, PrometheusRule (the rules file promtool
tests), dashboard ConfigMap, and the NetworkPolicies that let only the scraper in."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.chart import (
    CHART,
    HelmError,
    Rendered,
    env_of,
    named_container,
    pod_spec,
    render,
)
from tests.integration.prometheus import binary

NAME = "rel-prefect-dlt-metrics"
ALL_ON = [
    "metrics.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboards.enabled=true",
]
KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def full() -> Rendered:
    return Rendered("metrics-all", render(set_values=ALL_ON))


def _metrics_objects(rendered: Rendered) -> list[str]:
    return sorted(
        f"{m['kind']}/{m['metadata']['name']}"
        for m in rendered.manifests
        if m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "metrics"
    )


def test_off_by_default(default: Rendered) -> None:
    assert _metrics_objects(default) == []


def test_each_switch_needs_the_exporter() -> None:
    """serviceMonitor, prometheusRule and dashboards render nothing without metrics.enabled."""
    only = Rendered("switches", render(set_values=[s for s in ALL_ON if s != ALL_ON[0]]))
    assert _metrics_objects(only) == []


def test_the_exporter_reads_the_api_with_the_auth_secret(full: Rendered) -> None:
    exporter = named_container(full, "Deployment", NAME, "exporter")
    assert exporter["command"][:3] == ["flows", "metrics", "serve"]
    assert exporter["command"][exporter["command"].index("--port") + 1] == "9464"
    env = env_of(exporter)
    assert env["PREFECT_API_URL"]["value"].endswith(":4200/api")
    auth = env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    api_secret = full.get("Secret", auth["name"])
    assert auth["key"] in api_secret["data"]
    pod = pod_spec(full, "Deployment", NAME)
    assert pod["automountServiceAccountToken"] is False
    assert full.get("Deployment", NAME)["spec"]["replicas"] == 1


def test_the_service_and_service_monitor_select_the_exporter(full: Rendered) -> None:
    deployment = full.get("Deployment", NAME)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = full.get("Service", NAME)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port = service["spec"]["ports"][0]
    container = named_container(full, "Deployment", NAME, "exporter")
    assert port["targetPort"] == container["ports"][0]["name"] == "metrics"
    monitor = full.get("ServiceMonitor", NAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "20s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["pipelines"]}


def test_the_prometheus_rule_is_the_rules_file_and_promtool_accepts_it(
    full: Rendered, tmp_path: Path
) -> None:
    rule = full.get("PrometheusRule", "rel-prefect-dlt-alerts")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules_file = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == rules_file["groups"]
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(
        [binary("promtool"), "check", "rules", str(rendered)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_config_map_is_labelled_for_grafanas_sidecar(full: Rendered) -> None:
    config = full.get("ConfigMap", "rel-prefect-dlt-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["prefect-dlt.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    assert all(t["expr"] for p in dashboard["panels"] for t in p["targets"])


def test_only_the_scraper_may_reach_the_exporter(full: Rendered) -> None:
    policy = full.get("NetworkPolicy", NAME)
    pod_labels = full.get("Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9464}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_with_egress_policies_the_exporter_reaches_only_dns_and_the_server(
    rendered_sets: dict[str, Rendered],
) -> None:
    policy = rendered_sets["metrics"].get("NetworkPolicy", "rel-prefect-dlt-egress-metrics")
    ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert ports == [53, 53, 4200]
    components = policy["spec"]["podSelector"]["matchExpressions"][1]["values"]
    assert components == ["metrics"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("metrics.port=0", "/metrics/port"),
        ("metrics.serviceMonitor.interval=often", "interval"),
        ("metrics.scrapeEvery=30", "scrapeEvery"),
    ],
)
def test_bad_values_are_refused_by_the_schema(setting: str, named: str) -> None:
    with pytest.raises(HelmError) as refused:
        render(set_values=["metrics.enabled=true", setting])
    assert named in refused.value.stderr
