"""skaffold.yaml, k8s/kind-config.yaml and k8s/e2e-kind.sh agree with the chart, prefect.yaml
and the Dockerfile. None of them can run here (no cluster, no kind, no skaffold), so what they
name is checked against what exists: the artifact against the chart's image default, the
helm values against values.yaml and its schema, the port-forwarded Service and the objects
the e2e script uses against the chart rendered with skaffold's release name and namespace,
the deployment the script runs against prefect.yaml and the flows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import CHART, Rendered, load_manifests, run_helm

REPO = Path(__file__).resolve().parents[2]
SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
KIND_CONFIG = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
E2E = REPO / "k8s" / "e2e-kind.sh"
E2E_TEXT = E2E.read_text()
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
PREFECT_YAML = yaml.safe_load((REPO / "prefect.yaml").read_text())

ARTIFACTS = SKAFFOLD["build"]["artifacts"]
RELEASES = SKAFFOLD["deploy"]["helm"]["releases"]
KIND_PROFILE = next(p for p in SKAFFOLD.get("profiles", []) if p["name"] == "kind")


def sanitized(image: str) -> str:
    """How skaffold names an artifact in helm templates (IMAGE_REPO_<name>)."""
    return re.sub(r"[./:-]", "_", image)


def values_default(dotted: str) -> Any:
    node: Any = VALUES
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted} is not in values.yaml"
        node = node[part]
    return node


def schema_node(dotted: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA
    for part in dotted.split("."):
        properties = node.get("properties") or {}
        assert part in properties, f"{dotted} is not in values.schema.json"
        node = properties[part]
    return node


def script_var(name: str) -> str:
    """A NAME=value assignment of the e2e script (value up to the first space or #)."""
    match = re.search(rf"^{name}=(\S+)", E2E_TEXT, re.M)
    assert match, f"k8s/e2e-kind.sh sets no {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    assert len(RELEASES) == 1
    found: dict[str, Any] = RELEASES[0]
    return found


@pytest.fixture(scope="module")
def rendered(release: dict[str, Any]) -> Rendered:
    """The chart as skaffold installs it: its release name, namespace and values, with a
    made-up repository and tag in place of the templates."""
    args = ["template", release["name"], str(REPO / release["chartPath"])]
    args += ["--namespace", release["namespace"]]
    for key in release.get("setValueTemplates", {}):
        args += ["--set", f"{key}={'example.registry/prefect-dlt' if 'repo' in key else 'e2e1'}"]
    for key, value in release.get("setValues", {}).items():
        args += ["--set", f"{key}={value}"]
    # skaffold installs on a cluster, where the chart reads its generated Secrets back
    args += ["--set", "generatedSecrets.allowEphemeral=true"]
    return Rendered("skaffold", load_manifests(run_helm(*args)))


def test_skaffold_config_version_and_kind() -> None:
    assert re.fullmatch(r"skaffold/v4beta\d+", SKAFFOLD["apiVersion"])
    assert int(SKAFFOLD["apiVersion"].removeprefix("skaffold/v4beta")) >= 11
    assert SKAFFOLD["kind"] == "Config"


def test_artifact_is_the_charts_platform_image_built_from_the_dockerfile() -> None:
    assert len(ARTIFACTS) == 1
    artifact = ARTIFACTS[0]
    # values.yaml has no default repository (a plain install must name one); skaffold's
    # setValueTemplates fill it in with this artifact
    assert artifact["image"] == "prefect-dlt"
    assert values_default("image.repository") == ""
    context = REPO / artifact.get("context", ".")
    assert context.resolve() == REPO
    dockerfile = context / artifact["docker"]["dockerfile"]
    assert dockerfile.is_file(), dockerfile
    assert (context / ".dockerignore").is_file()


def test_release_installs_the_chart(release: dict[str, Any]) -> None:
    chart = REPO / release["chartPath"]
    assert chart.resolve() == CHART.resolve()
    assert (chart / "Chart.yaml").is_file()
    assert release["namespace"] and release.get("createNamespace") is True


def test_value_templates_set_the_image_of_the_artifact(release: dict[str, Any]) -> None:
    name = sanitized(ARTIFACTS[0]["image"])
    templates = release["setValueTemplates"]
    assert templates == {
        "image.repository": f"{{{{.IMAGE_REPO_{name}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{name}}}}}",
    }


def test_helm_value_keys_exist_in_values_and_schema(release: dict[str, Any]) -> None:
    keys = [*release.get("setValueTemplates", {}), *release.get("setValues", {})]
    assert "image.pullPolicy" in release.get("setValues", {})
    for key in keys:
        values_default(key)
        schema_node(key)
    for key, value in release.get("setValues", {}).items():
        allowed = schema_node(key).get("enum")
        assert allowed is None or value in allowed, f"{key}={value} not in {allowed}"


def test_rendered_pods_use_the_built_image(rendered: Rendered) -> None:
    image = "example.registry/prefect-dlt:e2e1"
    worker = rendered.get("Deployment", f"{RELEASES[0]['name']}-worker")
    for container in worker["spec"]["template"]["spec"]["containers"]:
        assert container["image"] == image
        assert container["imagePullPolicy"] == "IfNotPresent"
    configmap = rendered.get("ConfigMap", f"{RELEASES[0]['name']}-base-job-template")
    template = json.loads(configmap["data"]["base-job-template.json"])
    assert template["variables"]["properties"]["image"]["default"] == image


def test_port_forward_targets_the_server_service(
    rendered: Rendered, release: dict[str, Any]
) -> None:
    forwards = SKAFFOLD["portForward"]
    assert forwards
    for forward in forwards:
        assert forward["resourceType"] == "service"
        assert forward.get("namespace", release["namespace"]) == release["namespace"]
        service = rendered.get("Service", forward["resourceName"])
        ports = [p["port"] for p in service["spec"]["ports"]]
        assert forward["port"] in ports, (forward, ports)
    ui = next(f for f in forwards if f["resourceName"].endswith("-server"))
    assert ui["port"] == values_default("server.service.port") == 4200
    assert ui.get("localPort", ui["port"]) == 4200  # the chart's default PREFECT_UI_API_URL


def test_kind_profile_activates_on_kind_contexts_and_never_pushes() -> None:
    (activation,) = KIND_PROFILE["activation"]
    pattern = activation["kubeContext"]
    # skaffold: the context itself, or a regexp found in it (Go's MatchString)
    for context in ("kind-dev", f"kind-{KIND_CONFIG['name']}"):
        assert context == pattern or re.search(pattern, context), context
    for context in ("minikube", "docker-desktop", "gke_project_zone_kind-x", "prod"):
        assert not re.search(pattern, context), context
    assert KIND_PROFILE["build"]["local"]["push"] is False
    assert "artifacts" not in KIND_PROFILE["build"]  # the profile keeps the main artifact


def test_kind_config_is_a_kind_cluster() -> None:
    assert KIND_CONFIG["kind"] == "Cluster"
    assert KIND_CONFIG["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", KIND_CONFIG["name"])
    assert [n["role"] for n in KIND_CONFIG["nodes"]].count("control-plane") == 1


def test_e2e_script_names_what_the_chart_and_skaffold_create(
    rendered: Rendered, release: dict[str, Any]
) -> None:
    assert script_var("CONFIG") == "k8s/kind-config.yaml"
    assert script_var("RELEASE") == release["name"]
    assert script_var("NAMESPACE") == release["namespace"]
    prefix = release["name"]
    assert script_var("SERVER") == "$RELEASE-server"
    assert script_var("WORKER") == "$RELEASE-worker"
    assert script_var("API_SECRET") == "$RELEASE-api"
    rendered.get("Service", f"{prefix}-server")
    rendered.get("Deployment", f"{prefix}-server")
    rendered.get("Deployment", f"{prefix}-worker")
    secret = rendered.get("Secret", f"{prefix}-api")
    assert "PREFECT_API_AUTH_STRING" in secret["data"]
    assert "--profile kind" in E2E_TEXT
    assert "4200" in E2E_TEXT  # the server Service's port


def test_e2e_script_runs_an_existing_deployment() -> None:
    deployment = script_var("DEPLOYMENT")
    flow = script_var("FLOW")
    names = {d["name"]: d for d in PREFECT_YAML["deployments"]}
    assert deployment in names, f"{deployment} is not a deployment of prefect.yaml"
    path, _, attribute = names[deployment]["entrypoint"].partition(":")
    module = path.removesuffix(".py").replace("/", ".")
    loaded = __import__(module, fromlist=[attribute])
    assert getattr(loaded, attribute).name == flow
    assert "source_options" in E2E_TEXT
    parameters = names[deployment].get("parameters", {})
    assert "source_options" in parameters


def test_e2e_script_is_executable_bash() -> None:
    assert os.access(E2E, os.X_OK)
    assert E2E_TEXT.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in E2E_TEXT
    checked = subprocess.run(["bash", "-n", str(E2E)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


SHIM = """#!/bin/sh
# {name} stand-in for k8s/e2e-kind.sh against a local stack
case "$*" in
  "get clusters") echo "$E2E_CLUSTER" ;;
  *"get secret"*) printf '%s' "$E2E_AUTH" | base64 ;;
  *port-forward*) exec sleep 300 ;;
esac
exit 0
"""


@pytest.mark.integration
def test_e2e_script_runs_the_flow_and_prints_its_artifacts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The script's own logic (auth string from the Secret, the API calls that trigger the
    deployment, wait for it and print its artifacts) against a real Prefect server with a
    process worker; kind, kubectl, helm and skaffold are stand-ins that do nothing."""
    from devstack.ports import free_port
    from devstack.stack import LocalStack

    shims = tmp_path_factory.mktemp("shims")
    for name in ("docker", "kind", "kubectl", "helm", "skaffold"):
        (shims / name).write_text(SHIM.format(name=name))
        (shims / name).chmod(0o755)
    stack = LocalStack(tmp_path_factory.mktemp("e2e-stack"), api_port=free_port(avoid_plus=None))
    try:
        stack.up()
        env = {
            **os.environ,
            "PATH": f"{shims}:{os.environ['PATH']}",
            "E2E_CLUSTER": KIND_CONFIG["name"],
            "E2E_AUTH": stack.auth_string,
            "E2E_PORT": str(stack.api_port),
            "E2E_ROWS": "2000",
            "E2E_TIMEOUT": "300",
        }
        done = subprocess.run(
            [str(E2E)], env=env, capture_output=True, text=True, timeout=400, check=False
        )
    finally:
        stack.down()
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "state: COMPLETED" in out
    report = "--- synthetic-report (markdown): synthetic: completed, 2,000 rows"
    assert f"{report} (+4,000 in nested tables)" in out, out
    assert "| events | 2,000 |" in out, out
