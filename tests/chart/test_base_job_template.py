"""The work pool's base job template: one source of truth, release-specific defaults only,
and a worker that rolls when it changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema

from tests.chart.chart import CHART, REPO, Rendered, copy_chart, helm_template, load_manifests

SOURCE = REPO / "flows" / "work_pool" / "base-job-template.json"
CHART_COPY = CHART / "files" / "base-job-template.json"
CONFIGMAP = "rel-prefect-dlt-base-job-template"
RELEASE_DEFAULTS = {
    "namespace",
    "service_account_name",
    "storage_secret_name",
    "api_secret_name",
    "image",
    "state_url",
}


def test_chart_copy_is_byte_identical_to_the_source() -> None:
    assert CHART_COPY.read_bytes() == SOURCE.read_bytes(), (
        f"{CHART_COPY.relative_to(REPO)} differs from {SOURCE.relative_to(REPO)}: "
        f"cp {SOURCE.relative_to(REPO)} {CHART_COPY.relative_to(REPO)}"
    )


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
        "api_secret_name": "rel-prefect-dlt-api",
        "image": "prefect-dlt:0.1.0",
        "state_url": "s3://prefect-dlt/state",
    }


def test_defaults_follow_values(rendered_sets: dict[str, Rendered]) -> None:
    existing = _defaults(_template(rendered_sets["existing-secrets"]))
    assert existing["storage_secret_name"] == "my-s3-credentials"
    assert existing["api_secret_name"] == "my-prefect-auth"
    external = _defaults(_template(rendered_sets["external-s3"]))
    assert external["state_url"] == "s3://acme-dlt-state/dlt/state"
    production = _defaults(_template(rendered_sets["production-example"]))
    assert production["image"] == "registry.example.com/data/prefect-dlt:0.1.0"
    assert production["state_url"] == "s3://acme-prefect-dlt-state/state"
    assert production["storage_secret_name"] == "prefect-dlt-s3"


def test_equals_the_source_apart_from_those_defaults(rendered: Rendered) -> None:
    source = json.loads(SOURCE.read_text())
    rendered_template = _template(rendered)
    for template in (source, rendered_template):
        for name in RELEASE_DEFAULTS:
            template["variables"]["properties"][name].pop("default")
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
    template["variables"]["properties"]["cpu_request"]["default"] = "750m"
    template_file.write_text(json.dumps(template, indent=2))
    assert _checksum(chart) != base, "template file changed"


def test_worker_syncs_the_pool_from_the_configmap(default: Rendered) -> None:
    worker = default.get("Deployment", "rel-prefect-dlt-worker")
    pod = worker["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == ["wait-for-server", "sync-work-pool"]
    assert init["sync-work-pool"]["command"] == [
        "prefect",
        "work-pool",
        "create",
        "dlt-k8s",
        "--type",
        "kubernetes",
        "--base-job-template",
        "/template/base-job-template.json",
        "--overwrite",
    ]
    mounts = {m["mountPath"]: m["name"] for m in init["sync-work-pool"]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/template"]]["configMap"]["name"] == CONFIGMAP
