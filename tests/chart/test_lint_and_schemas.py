"""helm lint, and every rendered object against the Kubernetes schemas (strict)."""

from __future__ import annotations

import copy

import pytest

from tests.chart.chart import (
    BASE_VALUES,
    CHART,
    KUBERNETES_VERSIONS,
    Rendered,
    run_helm,
    schema_errors,
)
from tests.chart.conftest import NO_BASE, VALUE_SETS


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict(value_set: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    base = [] if value_set in NO_BASE else [BASE_VALUES]
    for path in [*base, *VALUE_SETS[value_set]]:
        args += ["--values", str(path)]
    out = run_helm(*args)
    assert "0 chart(s) failed" in out, out


def test_every_value_set_renders_objects(rendered: Rendered) -> None:
    kinds = {m["kind"] for m in rendered.manifests}
    assert {"Deployment", "Service", "Secret", "ConfigMap", "Role", "Job", "Pod"} <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_validate_against_kubernetes_schemas(rendered: Rendered, version: str) -> None:
    errors = [
        f"{m['kind']}/{m['metadata']['name']}: {problem}"
        for m in rendered.manifests
        if (problem := schema_errors(m, version))
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_schema_validation_is_strict(default: Rendered, version: str) -> None:
    """The validator rejects an unknown field and a wrong type, so a pass means something."""
    deployment = copy.deepcopy(default.all("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert schema_errors(deployment, version)
    service = copy.deepcopy(default.all("Service")[0])
    service["spec"]["ports"][0]["port"] = "http"
    assert schema_errors(service, version)


def test_every_object_is_namespaced_and_labelled(rendered: Rendered) -> None:
    for manifest in rendered.manifests:
        meta = manifest["metadata"]
        where = f"{rendered.name}: {manifest['kind']}/{meta['name']}"
        assert meta.get("namespace") == "pipelines", where
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "prefect-dlt", where
        assert labels.get("app.kubernetes.io/instance") == "rel", where
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", where
        assert labels.get("app.kubernetes.io/component"), where
        assert labels.get("helm.sh/chart", "").startswith("prefect-dlt-"), where
        assert len(meta["name"]) <= 63, where
