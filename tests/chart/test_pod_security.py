"""Every pod of every value set meets the Pod Security Standard "restricted" (and more)."""

from __future__ import annotations

import copy
import json

from tests.chart.chart import Rendered, containers, pod_spec, pod_specs, restricted_violations


def test_every_pod_is_restricted(rendered: Rendered) -> None:
    pods = [spec for m in rendered.manifests for spec in pod_specs(m)]
    assert pods
    problems = [f"{label}: {p}" for label, pod in pods for p in restricted_violations(pod)]
    assert not problems, f"{rendered.name}:\n" + "\n".join(problems)


def test_the_work_pool_job_template_is_restricted(default: Rendered) -> None:
    config = default.get("ConfigMap", "rel-prefect-dlt-base-job-template")
    template = json.loads(config["data"]["base-job-template.json"])
    job = template["job_configuration"]["job_manifest"]
    assert [label for label, _ in pod_specs(job)] == ["Job/?"]
    for _, pod in pod_specs(job):
        assert restricted_violations(pod) == []


def test_the_checker_catches_violations(default: Rendered) -> None:
    good = pod_spec(default, "Deployment", "rel-prefect-dlt-server")
    assert restricted_violations(good) == []

    def broken(change: str) -> list[str]:
        pod = copy.deepcopy(good)
        container = pod["containers"][0]
        if change == "root":
            pod["securityContext"]["runAsUser"] = 0
        elif change == "escalation":
            del container["securityContext"]["allowPrivilegeEscalation"]
        elif change == "caps":
            container["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
        elif change == "seccomp":
            del pod["securityContext"]["seccompProfile"]
            del container["securityContext"]["seccompProfile"]
        elif change == "hostPath":
            pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
        elif change == "privileged":
            container["securityContext"]["privileged"] = True
        elif change == "hostNetwork":
            pod["hostNetwork"] = True
        elif change == "writable-root":
            container["securityContext"]["readOnlyRootFilesystem"] = False
        elif change == "non-root-off":
            del pod["securityContext"]["runAsNonRoot"]
            del container["securityContext"]["runAsNonRoot"]
        return restricted_violations(pod)

    for change in (
        "root",
        "escalation",
        "caps",
        "seccomp",
        "hostPath",
        "privileged",
        "hostNetwork",
        "writable-root",
        "non-root-off",
    ):
        assert broken(change), change


def test_uids(default: Rendered) -> None:
    def pod_user(kind: str, name: str) -> tuple[int, int]:
        pod = pod_spec(default, kind, name)
        return pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]

    assert pod_user("StatefulSet", "rel-prefect-dlt-postgresql") == (999, 999)
    assert pod_user("StatefulSet", "rel-prefect-dlt-storage") == (1001, 1001)
    assert pod_user("Deployment", "rel-prefect-dlt-server") == (1001, 1001)
    assert pod_user("Deployment", "rel-prefect-dlt-worker") == (1001, 1001)


def test_writable_paths_are_empty_dirs_or_volumes(rendered: Rendered) -> None:
    """Read-only roots: /tmp is an emptyDir in every container."""
    for manifest in rendered.manifests:
        for label, pod in pod_specs(manifest):
            empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
            for container in containers(pod):
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert mounts.get("/tmp") in empty_dirs, f"{label}/{container['name']}"


def test_only_the_worker_mounts_a_service_account_token(rendered: Rendered) -> None:
    for manifest in rendered.manifests:
        for label, pod in pod_specs(manifest):
            if manifest["metadata"]["labels"]["app.kubernetes.io/component"] == "worker":
                assert pod.get("automountServiceAccountToken") is not False, label
                assert pod["serviceAccountName"] == "rel-prefect-dlt-worker"
            else:
                assert pod.get("automountServiceAccountToken") is False, label
                assert "serviceAccountName" not in pod, label
