"""NetworkPolicy escape hatches: extra ingress and egress rules per component, a metrics
scraper into the worker and flow-run pods, egress to the failure-alert webhook.
(tests/chart/test_components.py covers the policies every install gets.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart import HelmError, Rendered, helm_template, render

BI = {"from": [{"namespaceSelector": {"matchLabels": {"team": "bi"}}}], "ports": [{"port": 4200}]}
BACKUP = {"from": [{"podSelector": {"matchLabels": {"app": "pg-backup"}}}]}
VAULT = {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 8200}]}
PROXY = {"to": [{"ipBlock": {"cidr": "10.8.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 3128}]}
EXTRAS: dict[str, Any] = {
    "networkPolicy": {
        "server": {"extraIngress": [BI], "extraEgress": [VAULT]},
        "postgresql": {"extraIngress": [BACKUP]},
        "storage": {"extraIngress": [BACKUP]},
        "worker": {"extraIngress": [BI], "extraEgress": [PROXY]},
        "flowRuns": {"extraIngress": [BI]},
        "hooks": {"extraEgress": [PROXY]},
        "egress": {"enabled": True},
    }
}
PROMETHEUS = {
    "enabled": True,
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    "ports": [{"protocol": "TCP", "port": 8080}],
}


def _rules(rendered: Rendered, name: str, direction: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = rendered.get("NetworkPolicy", name)["spec"][direction]
    return rules


@pytest.fixture(scope="module")
def extras() -> Rendered:
    return Rendered("extras", render(values=EXTRAS))


def test_extra_ingress_per_component(extras: Rendered) -> None:
    assert BI in _rules(extras, "rel-prefect-dlt-server", "ingress")
    assert BACKUP in _rules(extras, "rel-prefect-dlt-postgresql", "ingress")
    assert BACKUP in _rules(extras, "rel-prefect-dlt-storage", "ingress")
    for component in ("worker", "flow-run"):
        policy = extras.get("NetworkPolicy", f"rel-prefect-dlt-{component}")["spec"]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert policy["ingress"] == [BI]
    assert BACKUP not in _rules(extras, "rel-prefect-dlt-server", "ingress")


def test_extra_egress_per_component(extras: Rendered) -> None:
    assert VAULT in _rules(extras, "rel-prefect-dlt-egress-server", "egress")
    assert PROXY in _rules(extras, "rel-prefect-dlt-egress-worker", "egress")
    assert PROXY in _rules(extras, "rel-prefect-dlt-egress-hooks", "egress")
    assert PROXY not in _rules(extras, "rel-prefect-dlt-egress-server", "egress")
    assert VAULT not in _rules(extras, "rel-prefect-dlt-egress-flow-run", "egress")


def test_no_extra_policy_by_default(default: Rendered) -> None:
    names = {p["metadata"]["name"] for p in default.all("NetworkPolicy")}
    assert "rel-prefect-dlt-worker" not in names and "rel-prefect-dlt-flow-run" not in names


def test_the_scraper_reaches_worker_and_flow_run_pods_only() -> None:
    rendered = Rendered("scrape", render(values={"networkPolicy": {"scraper": PROMETHEUS}}))
    expected = {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": PROMETHEUS["podSelector"],
            }
        ],
        "ports": PROMETHEUS["ports"],
    }
    assert _rules(rendered, "rel-prefect-dlt-worker", "ingress") == [expected]
    assert _rules(rendered, "rel-prefect-dlt-flow-run", "ingress") == [expected]
    assert expected not in _rules(rendered, "rel-prefect-dlt-server", "ingress")
    # the flow-run pods the worker creates carry the label the policy selects
    template = rendered.get("ConfigMap", "rel-prefect-dlt-base-job-template")
    assert '"app.kubernetes.io/component": "flow-run"' in template["data"]["base-job-template.json"]


@pytest.mark.parametrize(
    ("webhook", "rule"),
    [
        ({"enabled": True}, {"ports": [{"protocol": "TCP", "port": 443}]}),
        (
            {"enabled": True, "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]},
            {
                "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
                "ports": [{"protocol": "TCP", "port": 443}],
            },
        ),
    ],
)
def test_the_server_and_its_services_reach_the_alert_webhook(
    webhook: dict[str, Any], rule: dict[str, Any]
) -> None:
    values = {"networkPolicy": {"egress": {"enabled": True, "alertWebhook": webhook}}}
    rendered = Rendered("webhook", render(values=values))
    policy = rendered.get("NetworkPolicy", "rel-prefect-dlt-egress-server")["spec"]
    components = policy["podSelector"]["matchExpressions"][1]["values"]
    assert {"server", "server-services"} <= set(components), "the services call the webhook"
    assert rule in policy["egress"]
    off = Rendered("off", render(values={"networkPolicy": {"egress": {"enabled": True}}}))
    assert rule not in _rules(off, "rel-prefect-dlt-egress-server", "egress")


def test_a_misspelt_rule_fails() -> None:
    with pytest.raises(HelmError) as caught:
        helm_template(set_values=["networkPolicy.worker.extraIngress[0].form[0].podSelector.x=y"])
    assert "form" in caught.value.stderr
