"""Running a Kubernetes container spec with `docker run`: what a node would do with a pod.

The image tests have no cluster, so the chart's pods and the worker's flow-run Job are run
as containers on this machine's Docker, with what the kubelet would give them:

- command/args (Kubernetes' command replaces the image's entrypoint, args its CMD), workingDir;
- env: literal values, `fieldRef` (pod name, namespace, node name), `secretKeyRef` and
  `configMapKeyRef`; then `envFrom` secrets and config maps, which `env` overrides;
- resources: limits as `--cpus`/`--memory`, requests as `--cpu-shares`/`--memory-reservation`;
- securityContext (container, else pod): runAsUser/runAsGroup, fsGroup as a supplementary
  group, readOnlyRootFilesystem, capabilities dropped, no privilege escalation;
- volumes: emptyDir as a tmpfs, configMap as a read-only bind mount of its files.

"Secrets" and "config maps" are plain dicts the test supplies (its real credentials; a real
v1 Secret manifest is decoded with `secret_data`, base64 `data` and `stringData` as the API
server stores them), and
`rewrites` maps cluster addresses (the server's Service DNS name) to the host's loopback
ones. Anything else in a spec (another volume type, an unknown fieldRef, a missing secret
that is not optional) raises, so a spec the test cannot honour never runs half-translated.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL = "flows-image-test"
_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity in cores: "250m" -> 0.25, "1.5" -> 1.5."""
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity in bytes: "512Mi", "1Gi", "2G", "1048576"."""
    text = str(quantity)
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", text)
    if match is None:
        raise ValueError(f"not a memory quantity: {text!r}")
    number, suffix = match.groups()
    factor = _BINARY_SUFFIXES.get(suffix or "") or _DECIMAL_SUFFIXES.get(suffix or "") or 1
    return int(float(number) * factor)


def secret_data(*manifests: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Secret name -> its keys and decoded values, from v1 Secret manifests: `data` is
    base64 (refused when it is not), `stringData` wins over it, as the API server merges it."""
    found: dict[str, dict[str, str]] = {}
    for manifest in manifests:
        if (manifest.get("apiVersion"), manifest.get("kind")) != ("v1", "Secret"):
            raise ValueError(
                f"not a v1 Secret: {manifest.get('apiVersion')}/{manifest.get('kind')}"
            )
        name = manifest["metadata"]["name"]
        values: dict[str, str] = {}
        for key, encoded in (manifest.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as err:
                raise ValueError(f"Secret {name}: data.{key} is not base64 text ({err})") from err
        values.update(manifest.get("stringData") or {})
        found[name] = values
    return found


@dataclass
class Node:
    """What the cluster provides to a pod: secrets, config maps, names and addresses."""

    secrets: Mapping[str, Mapping[str, str]]
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    namespace: str = "pipelines"
    node_name: str = "docker-node"
    rewrites: Mapping[str, str] = field(default_factory=dict)  # cluster address -> host address
    scratch: Path | None = None  # where config map volumes are written for bind mounts

    def rewrite(self, value: str) -> str:
        for cluster, host in self.rewrites.items():
            value = value.replace(cluster, host)
        return value

    def field_ref(self, path: str, pod_name: str) -> str:
        known = {
            "metadata.name": pod_name,
            "metadata.namespace": self.namespace,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": "default",
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        if path not in known:
            raise ValueError(f"fieldRef {path!r} is not supported here")
        return known[path]

    def _source(self, kind: str, name: str, optional: bool) -> Mapping[str, str] | None:
        found = (self.secrets if kind == "secret" else self.config_maps).get(name)
        if found is None and not optional:
            raise KeyError(f"the pod needs {kind} {name!r}, which the test does not provide")
        return found


def container_env(container: Mapping[str, Any], node: Node, pod_name: str) -> dict[str, str]:
    """The environment the kubelet would give the container (envFrom first, env overrides)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            ref, kind = source["secretRef"], "secret"
        elif "configMapRef" in source:
            ref, kind = source["configMapRef"], "configmap"
        else:
            raise ValueError(f"envFrom source {source} is not supported here")
        data = node._source(kind, ref["name"], bool(ref.get("optional")))
        for key, value in (data or {}).items():
            env[prefix + key] = node.rewrite(value)
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            value = item["value"]
            if value is None:
                continue
            if "$(" in str(value):
                raise ValueError(f"env {name}: $(VAR) expansion is not supported here")
            env[name] = node.rewrite(str(value))
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = node.field_ref(source["fieldRef"]["fieldPath"], pod_name)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source["configMapKeyRef"]
            data = node._source(kind, ref["name"], bool(ref.get("optional")))
            if data is None:
                continue
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise KeyError(f"env {name}: {kind} {ref['name']!r} has no key {ref['key']!r}")
            env[name] = node.rewrite(data[ref["key"]])
        elif not item.get("valueFrom"):
            env[name] = ""
        else:
            raise ValueError(f"env {name}: valueFrom {source} is not supported here")
    return env


def docker_run_args(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    node: Node,
    pod_name: str,
    *,
    command: Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_mounts: Sequence[tuple[Path, str]] = (),
    network: str = "host",
) -> list[str]:
    """`docker run` options, image and argv for `container` of pod spec `pod`.

    `command` replaces the container's command and args (to run a tool in the same
    container setup); `extra_mounts` adds (host dir, container path) read-only bind mounts.
    """
    pod_sc = pod.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    opts: list[str] = ["--network", network, "--hostname", pod_name[:63]]
    opts += ["--label", f"{LABEL}=1", "--label", f"{LABEL}.pod={pod_name}"]

    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) and user in (None, 0):
        raise ValueError(f"{container['name']}: runAsNonRoot without an explicit non-zero UID")
    if user is not None:
        opts += ["--user", f"{user}:{group if group is not None else user}"]
    if pod_sc.get("fsGroup") is not None:
        opts += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        opts.append("--read-only")
    for cap in (sc.get("capabilities") or {}).get("drop", []):
        opts += ["--cap-drop", cap]
    for cap in (sc.get("capabilities") or {}).get("add", []):
        opts += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    if sc.get("privileged"):
        raise ValueError(f"{container['name']}: privileged containers are not run here")

    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "cpu" in limits:
        opts += ["--cpus", f"{cpu_cores(limits['cpu']):g}"]
    if "memory" in limits:
        opts += ["--memory", str(memory_bytes(limits["memory"]))]
    if "cpu" in requests:
        opts += ["--cpu-shares", str(max(2, int(cpu_cores(requests["cpu"]) * 1024)))]
    if "memory" in requests:
        opts += ["--memory-reservation", str(memory_bytes(requests["memory"]))]

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        if "emptyDir" in volume:
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            options = "rw,exec,nosuid,nodev,mode=1777" + (
                f",size={memory_bytes(size)}" if size else ""
            )
            opts += ["--tmpfs", f"{path}:{options}"]
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            data = node._source("configmap", name, bool(volume["configMap"].get("optional")))
            if node.scratch is None:
                raise ValueError("config map volumes need Node.scratch")
            folder = node.scratch / f"{pod_name}-{mount['name']}"
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
            for key, value in (data or {}).items():
                (folder / key).write_text(value)
                (folder / key).chmod(0o644)
            opts += ["-v", f"{folder}:{path}:ro"]
        else:
            raise ValueError(f"volume {mount['name']}: type {sorted(volume)} not supported here")
    for host_dir, path in extra_mounts:
        opts += ["-v", f"{host_dir}:{path}:ro"]

    env = {**container_env(container, node, pod_name), **(extra_env or {})}
    for name, value in env.items():
        opts += ["-e", f"{name}={value}"]
    if container.get("workingDir"):
        opts += ["--workdir", container["workingDir"]]

    if command is not None:
        argv = list(command)
        opts += ["--entrypoint", argv[0]]
        return [*opts, container["image"], *argv[1:]]
    k8s_command = list(container.get("command") or [])
    k8s_args = list(container.get("args") or [])
    if k8s_command:
        opts += ["--entrypoint", k8s_command[0]]
        return [*opts, container["image"], *k8s_command[1:], *k8s_args]
    return [*opts, container["image"], *k8s_args]


@dataclass
class Finished:
    name: str
    code: int
    logs: str

    def __str__(self) -> str:
        return f"container {self.name} exited {self.code}; last output:\n{self.logs[-4000:]}"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"docker {shlex.join(args)[:300]} exited {done.returncode}: {done.stderr[-2000:]}"
        )
    return done.stdout


def start(name: str, run_args: Sequence[str]) -> str:
    """Starts a detached container; returns its name."""
    docker("run", "--detach", "--name", name, *run_args)
    return name


def wait(name: str, timeout: float) -> Finished:
    """Waits for a container to exit; returns its exit code and logs (stdout and stderr)."""
    try:
        code = int(docker("wait", name, timeout=timeout).strip())
    except subprocess.TimeoutExpired as err:
        logs = logs_of(name)
        docker("kill", name, check=False)
        raise TimeoutError(
            f"container {name} still running after {timeout:.0f} s:\n{logs}"
        ) from err
    return Finished(name, code, logs_of(name))


def logs_of(name: str) -> str:
    done = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout + done.stderr


def remove(*names: str) -> None:
    if names:
        docker("rm", "--force", *names, check=False)


def run(name: str, run_args: Sequence[str], timeout: float) -> Finished:
    """Runs a container to its end and removes it."""
    start(name, run_args)
    try:
        return wait(name, timeout)
    finally:
        remove(name)


def image_config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(docker("image", "inspect", image))[0]["Config"]
    return config
