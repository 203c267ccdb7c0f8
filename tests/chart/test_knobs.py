"""The knobs operators expect, per component: each value reaches the object it names."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart import (
    KUBERNETES_VERSIONS,
    Rendered,
    containers,
    env_of,
    pod_spec,
    pod_specs,
    render,
    restricted_violations,
    schema_errors,
)

# component values block -> (kind, object name, main container)
COMPONENTS: dict[str, tuple[str, str, str]] = {
    "server": ("Deployment", "rel-prefect-dlt-server", "server"),
    "worker": ("Deployment", "rel-prefect-dlt-worker", "worker"),
    "postgresql": ("StatefulSet", "rel-prefect-dlt-postgresql", "postgresql"),
    "storage.bundled": ("StatefulSet", "rel-prefect-dlt-storage", "seaweedfs"),
    "hooks": ("Job", "rel-prefect-dlt-deploy-flows", "deploy-flows"),
    "helmTest": ("Pod", "rel-prefect-dlt-test-connection", "test-connection"),
}
KNOBS = {
    "podAnnotations": {"example.com/team": "data"},
    "podLabels": {"team": "data"},
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    "extraEnvFrom": [{"secretRef": {"name": "proxy-env"}}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corporate-ca", "readOnly": True}],
    "priorityClassName": "data-platform",
    "nodeSelector": {"pool": "data"},
}


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = value
    for key in reversed(dotted.split(".")):
        out = {key: out}
    return out


@pytest.fixture(scope="module")
def knobbed() -> Rendered:
    values: dict[str, Any] = {"storage": {}}
    for block in COMPONENTS:
        nested = _nest(block, dict(KNOBS))
        for key, value in nested.items():
            values.setdefault(key, {}).update(value)
    return Rendered("knobs", render(values=values))


@pytest.mark.parametrize("block", sorted(COMPONENTS))
def test_pod_knobs_reach_the_pod(knobbed: Rendered, block: str) -> None:
    kind, name, main = COMPONENTS[block]
    manifest = knobbed.get(kind, name)
    meta = manifest["metadata"] if kind == "Pod" else manifest["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "data"
    assert meta["annotations"]["example.com/team"] == "data"
    pod = next(pod_specs(manifest))[1]
    assert pod["priorityClassName"] == "data-platform"
    assert pod["nodeSelector"] == {"pool": "data"}
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    container = {c["name"]: c for c in containers(pod)}[main]
    assert env_of(container)["HTTPS_PROXY"]["value"] == "http://proxy:3128"
    assert {"secretRef": {"name": "proxy-env"}} in container["envFrom"]
    assert KNOBS["extraVolumeMounts"][0] in container["volumeMounts"]
    assert not restricted_violations(pod)
    for version in KUBERNETES_VERSIONS:
        assert schema_errors(manifest, version) is None


def test_probe_timings() -> None:
    values = {
        "server": {"probes": {"readiness": {"periodSeconds": 7, "failureThreshold": 9}}},
        "worker": {"probes": {"liveness": {"initialDelaySeconds": 90}}},
    }
    found = Rendered("probes", render(values=values))
    server = pod_spec(found, "Deployment", "rel-prefect-dlt-server")
    readiness = server["containers"][0]["readinessProbe"]
    assert (readiness["periodSeconds"], readiness["failureThreshold"]) == (7, 9)
    assert readiness["timeoutSeconds"] == 5, "the rest keeps its default"
    assert readiness["httpGet"]["path"] == "/api/ready"
    worker = pod_spec(found, "Deployment", "rel-prefect-dlt-worker")
    assert worker["containers"][0]["livenessProbe"]["initialDelaySeconds"] == 90


def test_worker_queues_prefetch_query_and_service_account() -> None:
    values = {
        "worker": {
            "queues": ["critical", "default"],
            "prefetchSeconds": 60,
            "querySeconds": 5,
            "serviceAccount": {
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/w"}
            },
        }
    }
    found = Rendered("worker", render(values=values))
    worker = pod_spec(found, "Deployment", "rel-prefect-dlt-worker")["containers"][0]
    command = worker["command"]
    assert command[command.index("--work-queue") :][:4] == [
        "--work-queue",
        "critical",
        "--work-queue",
        "default",
    ]
    env = env_of(worker)
    assert env["PREFECT_WORKER_PREFETCH_SECONDS"]["value"] == "60"
    assert env["PREFECT_WORKER_QUERY_SECONDS"]["value"] == "5"
    account = found.get("ServiceAccount", "rel-prefect-dlt-worker")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/w"
    }


def test_service_annotations_and_node_port() -> None:
    values = {
        "server": {
            "service": {
                "type": "NodePort",
                "nodePort": 30420,
                "annotations": {"example.com/lb": "internal"},
            }
        }
    }
    service = Rendered("svc", render(values=values)).get("Service", "rel-prefect-dlt-server")
    assert service["metadata"]["annotations"] == {"example.com/lb": "internal"}
    assert service["spec"]["ports"][0]["nodePort"] == 30420


def test_ingress_with_several_hosts_paths_and_tls() -> None:
    values = {
        "server": {
            "ingress": {
                "enabled": True,
                "host": "prefect.example.com",
                "paths": ["/", "/api"],
                "extraHosts": [{"host": "prefect.internal", "paths": ["/"]}],
                "tls": {"enabled": True, "secretName": "public-tls"},
                "extraTls": [{"hosts": ["prefect.internal"], "secretName": "internal-tls"}],
            }
        }
    }
    ingress = Rendered("ing", render(values=values)).get("Ingress", "rel-prefect-dlt-server")
    rules = {r["host"]: [p["path"] for p in r["http"]["paths"]] for r in ingress["spec"]["rules"]}
    assert rules == {"prefect.example.com": ["/", "/api"], "prefect.internal": ["/"]}
    assert [t["secretName"] for t in ingress["spec"]["tls"]] == ["public-tls", "internal-tls"]
    for version in KUBERNETES_VERSIONS:
        assert schema_errors(ingress, version) is None


def test_a_volume_the_restricted_profile_forbids_is_refused() -> None:
    from tests.chart.chart import HelmError, helm_template

    with pytest.raises(HelmError) as caught:
        helm_template(
            set_values=["worker.extraVolumes[0].name=h", "worker.extraVolumes[0].hostPath.path=/"]
        )
    assert "hostPath" in caught.value.stderr
