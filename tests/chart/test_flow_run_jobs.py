"""The flow-run Job of every deployment, as prefect-kubernetes' own code builds it from the
chart's base job template and the deployment's job_variables, for every value set.

`KubernetesWorkerJobConfiguration.from_template_and_values` then `prepare_for_flow_run` are
what the worker runs for a flow run before it calls the Kubernetes API (tests/image runs the
same path inside the image against a real server). The Job must validate strictly, meet the
restricted profile, stay in the release namespace, and carry the placement, pull secrets and
Secrets-as-env the values asked for.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import uuid
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.chart import (
    KUBERNETES_VERSIONS,
    REPO,
    Rendered,
    render,
    restricted_violations,
    schema_errors,
)

CONFIGMAP = "rel-prefect-dlt-base-job-template"
PLACEHOLDER = re.compile(r"{{\s*\$(\w+)\s*}}")
Jobs = dict[str, dict[str, dict[str, Any]]]  # value set -> deployment -> Job


class _NoClient:
    """Stands in for a PrefectClient that must not be called."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the template asked the API for {name}")


NO_CLIENT: Any = _NoClient()


def _deployments(image: str) -> dict[str, dict[str, Any]]:
    """job_variables of each deployment of prefect.yaml, its env placeholders filled."""
    values = {"FLOWS_IMAGE": image, "FLOWS_WORK_POOL": "dlt-k8s"}
    text = PLACEHOLDER.sub(
        lambda m: values.get(m.group(1), ""), (REPO / "prefect.yaml").read_text()
    )
    project = yaml.safe_load(text)
    return {
        d["name"]: dict(d["work_pool"].get("job_variables") or {}) for d in project["deployments"]
    }


async def _build(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    # The template has no block or variable references, so the client is never asked:
    # NO_CLIENT keeps Prefect from starting its ephemeral server for nothing.
    configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
        template, job_variables, client=NO_CLIENT
    )
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="test-run"))
    return configuration.job_manifest


@pytest.fixture(scope="module")
def jobs(rendered_sets: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory) -> Jobs:
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))

    async def build_all() -> Jobs:
        out: Jobs = {}
        for name, rendered in rendered_sets.items():
            data = rendered.get("ConfigMap", CONFIGMAP)["data"]["base-job-template.json"]
            template = json.loads(data)
            image = template["variables"]["properties"]["image"]["default"]
            out[name] = {
                deployment: await _build(template, variables)
                for deployment, variables in _deployments(image).items()
            }
        return out

    return asyncio.run(build_all())


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_every_deployment_of_every_value_set(jobs: Jobs) -> None:
    assert len(jobs) >= 10
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert len(deployments) >= 6
    assert all(len(by_deployment) == len(deployments) for by_deployment in jobs.values())


# prefect-kubernetes requires these two in the pod spec (its manifest check refuses a Job
# without them), where Kubernetes has no such fields: the API server drops them with a
# warning. They are the only unknown fields allowed.
UPSTREAM_POD_FIELDS = {"parallelism": 1, "completions": 1}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_jobs_validate_strictly_and_are_restricted(jobs: Jobs, version: str) -> None:
    problems = []
    for value_set, by_deployment in jobs.items():
        for deployment, job in by_deployment.items():
            job = copy.deepcopy(job)
            pod = _pod(job)
            for key, value in UPSTREAM_POD_FIELDS.items():
                assert pod.pop(key) == value
            if error := schema_errors(job, version):
                problems.append(f"{value_set}/{deployment}: {error}")
            problems += [f"{value_set}/{deployment}: {p}" for p in restricted_violations(_pod(job))]
    assert not problems, "\n".join(problems)


def test_jobs_stay_in_the_release_namespace_with_their_labels(jobs: Jobs) -> None:
    for by_deployment in jobs.values():
        for job in by_deployment.values():
            assert job["metadata"]["namespace"] == "pipelines"
            labels = job["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/component"] == "flow-run"
            assert labels["app.kubernetes.io/instance"] == "rel"
            assert _pod(job)["serviceAccountName"] == "rel-prefect-dlt-flow-run"


def test_default_jobs_take_no_placement_and_load_to_the_bundled_store(jobs: Jobs) -> None:
    job = jobs["default"]["synthetic-daily"]
    pod = _pod(job)
    assert pod["nodeSelector"] == {} and pod["tolerations"] == [] and pod["affinity"] == {}
    assert "priorityClassName" not in pod, "unset: the cluster's default priority"
    assert pod["imagePullSecrets"] == []
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["DESTINATION__FILESYSTEM__BUCKET_URL"]["value"] == "s3://prefect-dlt/data"
    resources = pod["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "11Gi"},
    }, "the deployment's job_variables win over the pool's defaults"


def test_tainted_nodes_place_every_flow_run(jobs: Jobs) -> None:
    for job in jobs["tainted-nodes"].values():
        pod = _pod(job)
        assert pod["nodeSelector"] == {"pool": "data"}
        assert pod["tolerations"] == [
            {"key": "dedicated", "operator": "Equal", "value": "data", "effect": "NoSchedule"}
        ]
        assert "nodeAffinity" in pod["affinity"]
        assert pod["priorityClassName"] == "data-platform"


def test_private_registry_pulls_every_flow_run_with_its_secret(jobs: Jobs) -> None:
    for job in jobs["private-registry"].values():
        pod = _pod(job)
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["containers"][0]["image"] == (
            "registry.internal.example/data/prefect-dlt@sha256:" + "1" * 64
        )


def test_secrets_as_env_and_no_credential_in_a_job_variable(jobs: Jobs) -> None:
    for value_set in ("gitops-secrets", "production-example"):
        for job in jobs[value_set].values():
            container = _pod(job)["containers"][0]
            assert container["envFrom"] == [{"secretRef": {"name": "warehouse-credentials"}}]
    for by_deployment in jobs.values():
        for job in by_deployment.values():
            container = _pod(job)["containers"][0]
            literal = {e["name"] for e in container["env"] if "value" in e}
            assert not literal & {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"}
            refs = {
                e["name"]: e["valueFrom"]["secretKeyRef"]
                for e in container["env"]
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            assert refs["AWS_SECRET_ACCESS_KEY"]["key"] == "AWS_SECRET_ACCESS_KEY"


def test_production_flow_runs_require_a_persistent_destination(jobs: Jobs) -> None:
    for job in jobs["production-example"].values():
        env = {e["name"]: e.get("value") for e in _pod(job)["containers"][0]["env"]}
        assert env["FLOWS_REQUIRE_PERSISTENT_DESTINATION"] == "true"
        assert "DESTINATION__FILESYSTEM__BUCKET_URL" not in env, "no bundled store"


def test_deployment_job_variables_cannot_drop_the_state_store_keys(jobs: Jobs) -> None:
    """env_from_secrets overrides the whole envFrom list; the store's keys are in env."""
    job = jobs["gitops-secrets"]["synthetic-daily"]
    names = [e["name"] for e in _pod(job)["containers"][0]["env"]]
    assert {"AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"} <= set(names)


def _template(rendered: Rendered) -> dict[str, Any]:
    data: str = rendered.get("ConfigMap", CONFIGMAP)["data"]["base-job-template.json"]
    return dict(json.loads(data))


def test_flow_runs_take_the_charts_identity(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Not a fixed 1001: the platform image's identity as the values give it, overridable
    per deployment."""
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    identity = {"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000}
    rendered = Rendered("uid", render(values={"image": {"securityContext": identity}}))
    template = _template(rendered)
    pod = _pod(asyncio.run(_build(template, {})))
    assert {k: pod["securityContext"][k] for k in identity} == identity
    container = pod["containers"][0]["securityContext"]
    assert (container["runAsUser"], container["runAsGroup"]) == (2000, 3000)
    own = _pod(asyncio.run(_build(template, {"run_as_user": 5000, "fs_group": 5000})))
    assert (own["securityContext"]["runAsUser"], own["securityContext"]["fsGroup"]) == (5000, 5000)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"run_as_user": 0}, template["variables"])


def test_every_flow_run_reserves_disk_under_its_limit(jobs: Jobs) -> None:
    """The scheduler reserves disk only for a request; the limit sits above /tmp's."""
    from kubernetes.utils.quantity import parse_quantity

    for value_set, by_deployment in jobs.items():
        for deployment, job in by_deployment.items():
            pod = _pod(job)
            resources = pod["containers"][0]["resources"]
            request = parse_quantity(resources["requests"]["ephemeral-storage"])
            limit = parse_quantity(resources["limits"]["ephemeral-storage"])
            (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
            scratch = parse_quantity(tmp["emptyDir"]["sizeLimit"])
            assert 0 < request <= limit, (value_set, deployment)
            assert scratch < limit, f"{value_set}/{deployment}: /tmp would be evicted first"


def test_disk_is_a_job_variable_and_a_chart_default(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    defaults = {"ephemeral_storage_request": "5Gi", "ephemeral_storage_limit": "30Gi"}
    rendered = Rendered("disk", render(values={"flowRuns": {"resourceDefaults": defaults}}))
    template = _template(rendered)
    resources = _pod(asyncio.run(_build(template, {})))["containers"][0]["resources"]
    assert resources["requests"]["ephemeral-storage"] == "5Gi"
    assert resources["limits"]["ephemeral-storage"] == "30Gi"
    variables = {"ephemeral_storage_request": "8Gi", "tmp_size_limit": "40Gi"}
    tuned = _pod(asyncio.run(_build(template, {**variables, "ephemeral_storage_limit": "42Gi"})))
    assert tuned["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "8Gi"
    assert tuned["volumes"][0]["emptyDir"]["sizeLimit"] == "40Gi"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"ephemeral_storage_request": "lots"}, template["variables"])
