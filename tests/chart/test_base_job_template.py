"""The work pool's base job template: one source of truth, release-specific defaults only,
and a worker that rolls when it changes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flows.kube.pool_template import template_json
from tests.chart.chart import CHART, REPO, Rendered, copy_chart, helm_template, load_manifests

CHART_COPY = CHART / "files" / "base-job-template.json"
CONFIGMAP = "rel-prefect-dlt-base-job-template"
# variables whose default the chart sets from the release and its values
RELEASE_DEFAULTS = {
    "namespace",
    "service_account_name",
    "storage_secret_name",
    "image",
    "image_pull_policy",
    "state_url",
    "image_pull_secrets",
    "env_from_secrets",
    "env",
    "node_selector",
    "tolerations",
    "affinity",
    "priority_class_name",
    "run_as_user",
    "run_as_group",
    "fs_group",
}


def test_chart_copy_is_the_generated_template() -> None:
    """One definition: the chart's file is what `python -m flows.kube.pool_template` prints."""
    printed = subprocess.run(
        [sys.executable, "-m", "flows.kube.pool_template"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert printed == template_json()
    assert CHART_COPY.read_text() == printed, (
        f"{CHART_COPY.relative_to(REPO)} is stale: "
        f"python -m flows.kube.pool_template > {CHART_COPY.relative_to(REPO)}"
    )
    assert not (REPO / "flows" / "work_pool" / "base-job-template.json").exists()


def _template(rendered: Rendered) -> dict[str, Any]:
    config = rendered.get("ConfigMap", CONFIGMAP)
    assert set(config["data"]) == {"base-job-template.json"}
    return json.loads(config["data"]["base-job-template.json"])


def _defaults(template: dict[str, Any]) -> dict[str, Any]:
    props = template["variables"]["properties"]
    return {name: props[name].get("default") for name in RELEASE_DEFAULTS}


def test_release_specific_defaults(default: Rendered) -> None:
    assert _defaults(_template(default)) == {
        "namespace": "pipelines",
        "service_account_name": "rel-prefect-dlt-flow-run",
        "storage_secret_name": "rel-prefect-dlt-storage",
        "image": "prefect-dlt:0.1.0",
        "image_pull_policy": "IfNotPresent",
        "state_url": "s3://prefect-dlt/state",
        "image_pull_secrets": [],
        "env_from_secrets": [],
        "env": {
            "DESTINATION__FILESYSTEM__BUCKET_URL": "s3://prefect-dlt/data",
            "DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL": (
                "http://rel-prefect-dlt-storage.pipelines.svc.cluster.local:8333"
            ),
        },
        "node_selector": {},
        "tolerations": [],
        "affinity": {},
        "priority_class_name": None,
        "run_as_user": 1001,
        "run_as_group": 1001,
        "fs_group": 1001,
    }


def test_flow_runs_stay_in_the_release_namespace(rendered: Rendered) -> None:
    """The Role, the Secrets and the policies exist only there: another namespace is refused
    when the deployment or the run is created, not when the Job fails."""
    variables = _template(rendered)["variables"]
    assert variables["properties"]["namespace"]["enum"] == ["pipelines"]
    jsonschema.validate({"namespace": "pipelines"}, variables)
    with pytest.raises(jsonschema.ValidationError, match=r"namespace|pipelines"):
        jsonschema.validate({"namespace": "default"}, variables)


def test_flow_run_pods_carry_the_release_labels(rendered: Rendered) -> None:
    manifest = _template(rendered)["job_configuration"]["job_manifest"]
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/part-of": "prefect-dlt",
        "app.kubernetes.io/component": "flow-run",
        "app.kubernetes.io/instance": "rel",
    }


def test_defaults_follow_values(rendered_sets: dict[str, Rendered]) -> None:
    existing = _defaults(_template(rendered_sets["existing-secrets"]))
    assert existing["storage_secret_name"] == "my-s3-credentials"
    private = _defaults(_template(rendered_sets["private-registry"]))
    assert private["image_pull_secrets"] == [{"name": "regcred"}]
    assert private["image"] == ("registry.internal.example/data/prefect-dlt@sha256:" + "1" * 64)
    tainted = _defaults(_template(rendered_sets["tainted-nodes"]))
    assert tainted["node_selector"] == {"pool": "data"}
    assert tainted["tolerations"][0]["key"] == "dedicated"
    assert tainted["priority_class_name"] == "data-platform"
    assert "nodeAffinity" in tainted["affinity"]
    gitops = _defaults(_template(rendered_sets["gitops-secrets"]))
    assert gitops["env_from_secrets"] == [{"secretRef": {"name": "warehouse-credentials"}}]
    external = _defaults(_template(rendered_sets["external-s3"]))
    assert external["state_url"] == "s3://acme-dlt-state/dlt/state"
    production = _defaults(_template(rendered_sets["production-example"]))
    assert production["image"] == "registry.example.com/data/prefect-dlt:0.1.0"
    assert production["state_url"] == "s3://acme-prefect-dlt-state/state"
    assert production["storage_secret_name"] == "prefect-dlt-s3"
    assert production["env"] == {"FLOWS_REQUIRE_PERSISTENT_DESTINATION": "true"}


def test_equals_the_generated_template_apart_from_the_release(rendered: Rendered) -> None:
    source = json.loads(CHART_COPY.read_text())
    rendered_template = _template(rendered)
    for template in (source, rendered_template):
        for name in RELEASE_DEFAULTS:
            template["variables"]["properties"][name].pop("default", None)
        template["variables"]["properties"]["namespace"].pop("enum", None)
        pod = template["job_configuration"]["job_manifest"]["spec"]["template"]
        pod["metadata"]["labels"].pop("app.kubernetes.io/instance", None)
    assert rendered_template == source


def test_the_defaults_satisfy_the_variables_schema(rendered: Rendered) -> None:
    template = _template(rendered)
    variables = copy.deepcopy(template["variables"])
    defaults = {
        name: spec["default"] for name, spec in variables["properties"].items() if "default" in spec
    }
    jsonschema.validate(defaults, variables)


def _checksum(chart: Path = CHART, *set_values: str) -> str:
    manifests = load_manifests(
        helm_template(
            chart=chart, set_values=set_values, show_only=["templates/worker/deployment.yaml"]
        )
    )
    return manifests[0]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_checksum_annotation_follows_the_configmap(tmp_path: Path) -> None:
    base = _checksum()
    assert len(base) == 64
    assert _checksum(CHART) == base, "stable across renders"
    assert _checksum(CHART, "server.resources.limits.cpu=3") == base, "unrelated change"
    assert _checksum(CHART, "image.tag=2.0.0") != base, "image default changed"

    chart = copy_chart(tmp_path)
    template_file = chart / "files" / "base-job-template.json"
    template = json.loads(template_file.read_text())
    template["variables"]["properties"]["cpu_request"]["default"] = "750m"  # changed file
    template_file.write_text(json.dumps(template, indent=2))
    assert _checksum(chart) != base, "template file changed"


def test_worker_syncs_the_pool_from_the_configmap(default: Rendered) -> None:
    worker = default.get("Deployment", "rel-prefect-dlt-worker")
    pod = worker["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == ["wait-for-server", "sync-work-pool"]
    command = init["sync-work-pool"]["command"]
    assert "--overwrite" not in command, "create --overwrite resets the pool's limit and pause"
    assert command == [
        "flows",
        "work-pool",
        "sync",
        "--pool",
        "dlt-k8s",
        "--base-job-template",
        "/template/base-job-template.json",
    ]
    mounts = {m["mountPath"]: m["name"] for m in init["sync-work-pool"]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/template"]]["configMap"]["name"] == CONFIGMAP
