"""Every Secret, ConfigMap and egress NetworkPolicy a hook's pod needs exists before the
hook runs.

Helm creates a release's objects after its pre-install hooks: a pre-install hook may only
read objects that are hooks themselves, of the same phases and a lower weight (created
first). Once the release's objects exist (post-install, post-upgrade, post-rollback,
pre-delete, test) those serve. A Secret the chart only names (an existingSecret value)
is the operator's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.chart.chart import (
    KUBERNETES_VERSIONS,
    Manifest,
    Rendered,
    containers,
    pod_specs,
    render,
    schema_errors,
)

# phases that run when every object of the release exists (pre-rollback: the release being
# rolled back from is still installed, and its objects have the same names)
AFTER_RELEASE_OBJECTS = {
    "post-install",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "pre-delete",
    "test",
}
HA_FROM_VALUES = {
    "server": {"ha": {"enabled": True}},
    "postgresql": {"enabled": False},
    "externalDatabase": {"host": "db.example", "password": "from-values"},
    "networkPolicy": {"egress": {"enabled": True}},
}


def _hook(manifest: Manifest) -> tuple[set[str], int] | None:
    annotations = manifest["metadata"].get("annotations") or {}
    if "helm.sh/hook" not in annotations:
        return None
    phases = {p.strip() for p in annotations["helm.sh/hook"].split(",")}
    return phases, int(annotations.get("helm.sh/hook-weight", "0"))


def _needs(pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of each Secret and ConfigMap the pod reads."""
    for container in containers(pod):
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            if "secretKeyRef" in source:
                yield "Secret", source["secretKeyRef"]["name"]
            if "configMapKeyRef" in source:
                yield "ConfigMap", source["configMapKeyRef"]["name"]
        for env_from in container.get("envFrom", []):
            if "secretRef" in env_from:
                yield "Secret", env_from["secretRef"]["name"]
            if "configMapRef" in env_from:
                yield "ConfigMap", env_from["configMapRef"]["name"]
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _available(needed: Manifest | None, phases: set[str], weight: int) -> bool:
    if needed is None:
        return True  # not the chart's (an existingSecret)
    hook = _hook(needed)
    if hook is None:
        return phases <= AFTER_RELEASE_OBJECTS
    needed_phases, needed_weight = hook
    return phases <= needed_phases and needed_weight < weight


def _problems(rendered: Rendered) -> list[str]:
    problems = []
    egress_policies = [
        p for p in rendered.all("NetworkPolicy") if "Egress" in p["spec"].get("policyTypes", [])
    ]
    for manifest in rendered.manifests:
        hook = _hook(manifest)
        if hook is None or manifest["kind"] not in ("Job", "Pod"):
            continue
        phases, weight = hook
        where = f"{rendered.name}: {manifest['kind']}/{manifest['metadata']['name']}"
        for _label, pod in pod_specs(manifest):
            for kind, name in sorted(set(_needs(pod))):
                if not _available(rendered.find(kind, name), phases, weight):
                    problems.append(f"{where} ({sorted(phases)}) reads {kind}/{name} too early")
            if not egress_policies:
                continue
            template = manifest if manifest["kind"] == "Pod" else manifest["spec"]["template"]
            labels = template["metadata"]["labels"]
            allowing = [p for p in egress_policies if _selects(p["spec"]["podSelector"], labels)]
            if not any(_available(p, phases, weight) for p in allowing):
                names = [p["metadata"]["name"] for p in allowing]
                problems.append(f"{where} ({sorted(phases)}): no egress policy yet, of {names}")
    return problems


def test_hooks_find_what_they_need(rendered_sets: dict[str, Rendered]) -> None:
    sets = [
        *rendered_sets.values(),
        Rendered("ha-password-from-values", render(values=HA_FROM_VALUES)),
    ]
    problems = [problem for rendered in sets for problem in _problems(rendered)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_pre_install_hook_reading_a_release_secret() -> None:
    """What the HA first install did before: the migration read <fullname>-database."""
    rendered = Rendered("ha", render(values=HA_FROM_VALUES))
    migrate = rendered.get("Job", "rel-prefect-dlt-migrate")
    env = migrate["spec"]["template"]["spec"]["containers"][0]["env"]
    password = next(e for e in env if e["name"] == "PREFECT_SERVER_DATABASE_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == "rel-prefect-dlt-migrate"
    password["valueFrom"]["secretKeyRef"]["name"] = "rel-prefect-dlt-database"
    assert any("reads Secret/rel-prefect-dlt-database too early" in p for p in _problems(rendered))


@pytest.mark.parametrize("kind", ["Secret", "NetworkPolicy"])
def test_migration_prerequisites_are_hooks_for_the_phase_only(kind: str) -> None:
    rendered = Rendered("ha", render(values=HA_FROM_VALUES))
    name = "rel-prefect-dlt-migrate" if kind == "Secret" else "rel-prefect-dlt-egress-migrate"
    annotations = rendered.get(kind, name)["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(annotations["helm.sh/hook-weight"]) < 0
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    server_egress = rendered.get("NetworkPolicy", "rel-prefect-dlt-egress-server")
    assert "migrate" not in str(server_egress["spec"]["podSelector"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_ha_with_a_password_from_values_validates(version: str) -> None:
    rendered = Rendered("ha", render(values=HA_FROM_VALUES))
    errors = [
        f"{m['kind']}/{m['metadata']['name']}: {problem}"
        for m in rendered.manifests
        if (problem := schema_errors(m, version))
    ]
    assert not errors, "\n".join(errors)
