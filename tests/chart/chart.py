"""Rendering the prefect-dlt chart with helm and checking what comes out.

Modelled on apache/airflow's helm-tests: render with `helm template`, load every document,
validate it against the Kubernetes schemas, then assert on plain dicts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "prefect-dlt"
VALUES_DIR = Path(__file__).resolve().parent / "values"
# added in front of every render unless base=False (what an install on a cluster has)
BASE_VALUES = Path(__file__).resolve().parent / "base-values.yaml"
RELEASE = "rel"
NAMESPACE = "pipelines"
FULLNAME = f"{RELEASE}-prefect-dlt"
# Kubernetes versions every rendered object must validate against (strict: no unknown fields).
KUBERNETES_VERSIONS = ("1.31", "1.35")

Manifest = dict[str, Any]


def helm_binary() -> Path:
    """helm from $HELM or .tools/bin/helm (scripts/install-helm.sh puts it there)."""
    path = Path(os.environ.get("HELM") or REPO / ".tools" / "bin" / "helm")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"helm not found at {path}: run scripts/install-helm.sh (or set HELM=/path/to/helm)"
        )
    return path


class HelmError(Exception):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} exited {returncode}:\n{stderr}")
        self.stderr = stderr


def run_helm(*args: str) -> str:
    done = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise HelmError(args, done.returncode, done.stderr)
    return done.stdout


def helm_template(
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    chart: Path = CHART,
    show_only: Sequence[str] = (),
    base: bool = True,
    set_string_values: Sequence[str] = (),
) -> str:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    for path in [BASE_VALUES] * base + list(values_files):
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    for item in set_string_values:
        args += ["--set-string", item]
    for template in show_only:
        args += ["--show-only", template]
    return run_helm(*args)


def dry_run_install(*args: str) -> str:
    """`helm install --dry-run=client` of the chart (no cluster): its output, NOTES included."""
    return run_helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, *args
    )


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    chart: Path = CHART,
    values: dict[str, Any] | None = None,
    base: bool = True,
    set_string_values: Sequence[str] = (),
) -> list[Manifest]:
    """The chart's objects; `values` (a dict) is written to a file given after the others."""
    if values is None:
        return load_manifests(
            helm_template(
                values_files, set_values, chart, base=base, set_string_values=set_string_values
            )
        )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        yaml.safe_dump(values, extra)
        extra.flush()
        files = [*values_files, Path(extra.name)]
        return load_manifests(
            helm_template(files, set_values, chart, base=base, set_string_values=set_string_values)
        )


@dataclass(frozen=True)
class Rendered:
    """One rendered value set: every object, with look-ups by kind and name."""

    name: str
    manifests: list[Manifest]

    def all(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def find(self, kind: str, name: str) -> Manifest | None:
        for manifest in self.all(kind):
            if manifest["metadata"]["name"] == name:
                return manifest
        return None

    def get(self, kind: str, name: str) -> Manifest:
        found = self.find(kind, name)
        if found is None:
            have = sorted(f"{m['kind']}/{m['metadata']['name']}" for m in self.manifests)
            raise AssertionError(f"{self.name}: no {kind}/{name}; rendered: {have}")
        return found


def copy_chart(dest: Path) -> Path:
    """A private copy of the chart, for tests that change its files."""
    target = dest / CHART.name
    shutil.copytree(CHART, target)
    return target


# ---------- Kubernetes schemas ----------


def schema_nodes(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    """Every sub-schema (dict) of a JSON schema with its JSON pointer, parents first."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += schema_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += schema_nodes(value, f"{path}/{index}")
    return found


def schema_errors(manifest: Manifest, version: str) -> str | None:
    """None if the object validates strictly against Kubernetes `version`, else why not."""
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = ".".join(str(p) for p in err.path) or "(root)"
        return f"{where}: {err.message}"
    except kubernetes_validate.SchemaNotFoundError as err:
        return f"no schema: {err.message}"
    return None


# ---------- pods ----------


def pod_specs(manifest: Manifest) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, pod spec) of a workload: Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob."""
    kind = manifest.get("kind")
    label = f"{kind}/{manifest.get('metadata', {}).get('name', '?')}"
    spec = manifest.get("spec") or {}
    if kind == "Pod":
        yield label, spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield label, spec["template"]["spec"]
    elif kind == "CronJob":
        yield label, spec["jobTemplate"]["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *pod.get("initContainers", []),
        *pod.get("containers", []),
        *pod.get("ephemeralContainers", []),
    ]


def pod_spec(rendered: Rendered, kind: str, name: str) -> dict[str, Any]:
    """The pod spec of one rendered workload."""
    return next(pod_specs(rendered.get(kind, name)))[1]


def named_container(
    rendered: Rendered, kind: str, name: str, container_name: str
) -> dict[str, Any]:
    """One container (init, main or ephemeral) of a rendered workload, by its name."""
    return {c["name"]: c for c in containers(pod_spec(rendered, kind, name))}[container_name]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {item["name"]: item for item in container.get("env", [])}


# Volume types the project allows (a subset of what "restricted" allows: no csi, no ephemeral).
ALLOWED_VOLUME_TYPES = {
    "configMap",
    "secret",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
}
SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Where a pod spec breaks the Pod Security Standard "restricted" (latest), or the
    project's stricter rules: explicit non-root UID, read-only root filesystem, and volumes
    of the types in ALLOWED_VOLUME_TYPES only. Empty when it complies."""
    problems: list[str] = []
    pod_sc = pod.get("securityContext") or {}

    # baseline: host namespaces, ports, sysctls, AppArmor, SELinux
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is true")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl.get('name')}")
    contexts = [("pod", pod_sc)]
    contexts += [(c["name"], c.get("securityContext") or {}) for c in containers(pod)]
    for where, sc in contexts:
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            problems.append(f"{where}: appArmorProfile {apparmor}")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("user") or selinux.get("role"):
            problems.append(f"{where}: seLinuxOptions user/role set")
        if selinux.get("type") not in SELINUX_TYPES:
            problems.append(f"{where}: seLinuxOptions type {selinux.get('type')}")
        if sc.get("windowsOptions", {}).get("hostProcess"):
            problems.append(f"{where}: windows hostProcess")

    # volumes
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(
                f"volume {volume.get('name')}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)}"
            )

    # pod-level defaults the containers may inherit
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_user = pod_sc.get("runAsUser")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_user == 0:
        problems.append("pod: runAsUser 0")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"pod: seccompProfile {pod_seccomp}")

    for container in containers(pod):
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{name}: procMount {sc.get('procMount')}")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot") is True):
            problems.append(f"{name}: runAsNonRoot is not true")
        user = sc.get("runAsUser", pod_user)
        if user is None:
            problems.append(f"{name}: no explicit runAsUser")
        elif user == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp}")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{name}: adds capabilities {sorted(added)}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
    return problems
