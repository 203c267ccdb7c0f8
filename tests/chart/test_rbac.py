"""RBAC is least privilege: one namespaced Role for the worker, nothing for flow runs."""

from __future__ import annotations

from tests.chart.chart import Rendered, pod_spec

WORKER_RULES = [
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["pods", "pods/log", "pods/status"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]


def _normalized(rules: list[dict[str, list[str]]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples: order-independent, and nothing hides in a list."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_worker_role_rules_are_exactly_least_privilege(rendered: Rendered) -> None:
    roles = rendered.all("Role")
    assert [r["metadata"]["name"] for r in roles] == ["rel-prefect-dlt-worker"]
    rules = roles[0]["rules"]
    assert _normalized(rules) == _normalized(WORKER_RULES)
    assert len(_normalized(rules)) == sum(
        len(r["apiGroups"]) * len(r["resources"]) * len(r["verbs"]) for r in rules
    ), "duplicate grants"
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_nothing_cluster_wide(rendered: Rendered) -> None:
    kinds = {m["kind"] for m in rendered.manifests}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}


def test_the_role_is_bound_to_the_worker_only(rendered: Rendered) -> None:
    bindings = rendered.all("RoleBinding")
    assert len(bindings) == 1
    binding = bindings[0]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "rel-prefect-dlt-worker",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-prefect-dlt-worker", "namespace": "pipelines"}
    ]


def test_service_accounts(rendered: Rendered) -> None:
    accounts = {m["metadata"]["name"]: m for m in rendered.all("ServiceAccount")}
    assert set(accounts) == {"rel-prefect-dlt-worker", "rel-prefect-dlt-flow-run"}
    assert accounts["rel-prefect-dlt-flow-run"]["automountServiceAccountToken"] is False
    worker = pod_spec(rendered, "Deployment", "rel-prefect-dlt-worker")
    assert worker["serviceAccountName"] == "rel-prefect-dlt-worker"


def test_the_worker_observer_stays_in_the_namespace(default: Rendered) -> None:
    """A Role is namespaced, so the kopf observer must not watch cluster-wide."""
    pod = pod_spec(default, "Deployment", "rel-prefect-dlt-worker")
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["value"] == "pipelines"
