"""The Kubernetes work pool's base job template, as code.

The variables are a pydantic model extending prefect-kubernetes' own
`KubernetesWorkerVariables` (its JSON schema is what the Prefect server validates job
variables with); the Job manifest is data patched over
`KubernetesWorker.get_default_base_job_template()`, so upstream fields we do not touch stay
upstream's. `flows work-pool template` (or `python -m flows.kube.pool_template`) prints the
JSON that `flows setup` applies and the Helm chart embeds (charts/prefect-dlt/files/, checked
by a test).

Credentials never pass through job variables: the state store's come from the Secret named
by `storage_secret_name`, the API auth string from the Secret the worker names
(PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME), anything else
(destination credentials) from the Secrets listed in `env_from_secrets`.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Annotated, Any, Literal

from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerVariables
from pydantic import BaseModel, ConfigDict, Field

from flows.config.pod import IMAGE, RUN_BOUNDS_ENV
from flows.system.quantities import POD_RESOURCE_ENV, QUANTITY_PATTERN

# RFC 1123 subdomain: names of Secrets, ServiceAccounts, PriorityClasses
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The platform image's user; the chart sets the pool's defaults from its image.securityContext.
RUN_UID = 1001
# /tmp (dlt's working dir) is an emptyDir limited to TMP_SIZE_LIMIT; the container's
# ephemeral-storage limit (which the pod's emptyDirs, logs and writable layer count against)
# leaves headroom above it, so the emptyDir's own limit is the one a run meets first.
TMP_SIZE_LIMIT = "10Gi"
EPHEMERAL_STORAGE_LIMIT = "11Gi"

Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]
Name = Annotated[str, Field(pattern=DNS_NAME, max_length=253)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalObjectReference(_Strict):
    """Kubernetes' {name: ...} reference (imagePullSecrets)."""

    name: Name


class SecretEnvSource(_Strict):
    name: Name
    optional: bool = False


class EnvFromSecret(_Strict):
    """One envFrom entry of the flow-run container, Kubernetes' own shape: Prefect's
    templating substitutes whole values and cannot wrap bare names."""

    secretRef: SecretEnvSource  # Kubernetes field name


class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # Kubernetes field name


def _no_default(schema: dict[str, Any]) -> None:
    """Unset means "leave the field out of the Job", not null."""
    schema.pop("default", None)


class FlowRunVariables(KubernetesWorkerVariables):
    """Job variables of a dlt flow run: upstream's, stricter, plus placement, pull secrets,
    Secrets as env, the state store and the scratch volume. Unknown variables are refused."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(
        default="python -m flows.prefect.pod",
        title="Command",
        description="What the flow-run container runs. The default starts Prefect's engine "
        "under a lean supervisor that reschedules the run on SIGTERM as Prefect's "
        "`prefect flow-run execute` does, without that command's CLI and workspace "
        "processes (flows/prefect/pod.py).",
    )
    service_account_name: Name | None = Field(
        default="prefect-dlt-flow-run",
        description="The Kubernetes service account of the flow-run pod.",
    )
    backoff_limit: int = Field(
        default=0,
        ge=0,
        le=0,
        title="Backoff Limit",
        description="Kubernetes retries of the Job: kept at 0 so Prefect owns retries and "
        "reschedules evicted runs (the state store makes them resume).",
    )
    finished_job_ttl: int | None = Field(
        default=3600,
        ge=0,
        title="Finished Job TTL",
        description="Seconds a finished Job and its pod are kept (ttlSecondsAfterFinished).",
    )
    cpu_request: Quantity = Field(
        default="500m",
        title="CPU Request",
        description="CPU the flow-run pod requests, as a Kubernetes quantity: 500m, 1, 1.5",
    )
    cpu_limit: Quantity = Field(
        default="2",
        title="CPU Limit",
        description="CPU limit of the flow-run pod (Kubernetes quantity)",
    )
    memory_request: Quantity = Field(
        default="1Gi",
        title="Memory Request",
        description="Memory the flow-run pod requests: 512Mi, 1Gi, 2G, 0.5Gi, 129e6",
    )
    memory_limit: Quantity = Field(
        default="2Gi",
        title="Memory Limit",
        description="Memory limit of the flow-run pod; the container is OOMKilled above it",
    )
    state_url: str = Field(
        default="s3://prefect-dlt/state",
        title="State URL",
        pattern=r"^(s3|s3a|gs|az|abfs|file)://.+",
        description="Object storage URL where dlt working state is snapshotted (STATE__URL).",
    )
    storage_secret_name: Name = Field(
        default="prefect-dlt-storage",
        title="Storage Secret",
        description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL "
        "and AWS_DEFAULT_REGION for the state store, mounted as env.",
    )
    env_from_secrets: list[EnvFromSecret] = Field(
        default_factory=list,
        title="Secrets as env",
        description="More Secrets loaded with envFrom into the flow-run container, e.g. "
        '[{"secretRef": {"name": "warehouse-credentials"}}]: destination credentials go '
        "here, never into env.",
    )
    tmp_size_limit: Quantity = Field(
        default=TMP_SIZE_LIMIT,
        title="Scratch Size",
        description="Size limit of the emptyDir at /tmp that holds dlt's working dir; keep "
        "ephemeral_storage_limit above it.",
    )
    ephemeral_storage_request: Quantity = Field(
        default="2Gi",
        title="Disk Request",
        description="Local disk the scheduler reserves for the flow-run pod (ephemeral-storage "
        "request): its /tmp working dir, logs and writable layer.",
    )
    ephemeral_storage_limit: Quantity = Field(
        default=EPHEMERAL_STORAGE_LIMIT,
        title="Disk Limit",
        description="Local disk the flow-run pod may use in all (ephemeral-storage limit): "
        "tmp_size_limit plus headroom for logs; above it the kubelet evicts the pod.",
    )
    run_as_user: int = Field(
        default=RUN_UID,
        ge=1,
        title="Run As User",
        description="UID of the flow-run pod (non-zero): the image's user.",
    )
    run_as_group: int = Field(
        default=RUN_UID,
        ge=0,
        title="Run As Group",
        description="GID of the flow-run pod.",
    )
    fs_group: int = Field(
        default=RUN_UID,
        ge=0,
        title="FS Group",
        description="Group owning the flow-run pod's volumes.",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        title="Image Pull Secrets",
        description='Secrets to pull the flow-run image with, e.g. [{"name": "regcred"}].',
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        title="Node Selector",
        description="Node labels the flow-run pod must match (nodeSelector).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        title="Tolerations",
        description="Taints the flow-run pod tolerates.",
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        title="Affinity",
        description="Affinity rules of the flow-run pod (Kubernetes' Affinity object).",
    )
    priority_class_name: Name | None = Field(
        default=None,
        title="Priority Class",
        description="PriorityClass of the flow-run pod; unset leaves the cluster default.",
        json_schema_extra=_no_default,
    )
    start_timeout_seconds: int = Field(
        default=600,
        ge=60,
        title="Start Timeout",
        description="Seconds a flow run may stay Pending (its pod unscheduled, its image not "
        "pulled, a Secret missing) before `flows watchdog` ends it with the pod's reason "
        "(Failed when a rerun cannot fix it, else Crashed) and deletes its Job.",
    )
    active_deadline_seconds: int = Field(
        default=None,  # type: ignore[assignment]  # unset: no bound, the field is left out
        ge=60,
        title="Run Deadline",
        description="Seconds a flow run's Job may run, from its start (activeDeadlineSeconds); "
        "past it the run ends Failed, not rescheduled. Unset: no bound.",
        json_schema_extra=_no_default,
    )


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _secret_env(name: str, secret: str) -> dict[str, Any]:
    # optional: with workload identity the Secret has no key pair
    ref = {"name": secret, "key": name, "optional": True}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


STORAGE_SECRET_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)


CONTAINER_PATCH: dict[str, Any] = {
    # `{{ env }}` (the job variable) is merged into this list by prefect-kubernetes.
    "env": [
        _env("STATE__URL", "{{ state_url }}"),
        _env("FLOWS_HOME", "/tmp/flows"),
        _env("HOME", "/tmp"),
        _env(IMAGE.name, "{{ image }}"),
        # cgroups show limits, not requests: the run records and the start-of-attempt check
        # read these
        *(_env(name, "{{ " + key + " }}") for key, name in POD_RESOURCE_ENV.items()),
        # "<start timeout>/<run deadline>": Kubernetes takes strings only, and this keeps an
        # unset deadline ("600/") apart from a set one (flows/prefect/pod.py reads it)
        _env(RUN_BOUNDS_ENV, "{{ start_timeout_seconds }}/{{ active_deadline_seconds }}"),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("NODE_NAME", "spec.nodeName"),
        *(_secret_env(key, "{{ storage_secret_name }}") for key in STORAGE_SECRET_KEYS),
    ],
    # The whole list is the job variable: the state store's keys are in `env` above, so a
    # deployment's env_from_secrets cannot drop them.
    "envFrom": "{{ env_from_secrets }}",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": "{{ run_as_user }}",
        "runAsGroup": "{{ run_as_group }}",
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
}

POD_PATCH: dict[str, Any] = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": "{{ run_as_user }}",
        "runAsGroup": "{{ run_as_group }}",
        "fsGroup": "{{ fs_group }}",
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "{{ tmp_size_limit }}"}}],
    "automountServiceAccountToken": False,
    "imagePullSecrets": "{{ image_pull_secrets }}",
    "nodeSelector": "{{ node_selector }}",
    "tolerations": "{{ tolerations }}",
    "affinity": "{{ affinity }}",
    "priorityClassName": "{{ priority_class_name }}",
}
# Labels of the flow-run pods (NetworkPolicies select them); the chart adds its instance.
POD_LABELS = {"app.kubernetes.io/part-of": "prefect-dlt", "app.kubernetes.io/component": "flow-run"}


def _variables_schema() -> dict[str, Any]:
    schema = FlowRunVariables.model_json_schema()
    schema.pop("title", None)
    # an unknown job variable is an error, not silently ignored (BaseVariables' schema
    # generator drops pydantic's own marker)
    schema["additionalProperties"] = False
    for model in (EnvFromSecret, SecretEnvSource, LocalObjectReference, Toleration):
        schema["definitions"][model.__name__]["additionalProperties"] = False
    return schema


def build() -> dict[str, Any]:
    """The template: upstream's default with the platform's manifest and variables."""
    template = copy.deepcopy(KubernetesWorker.get_default_base_job_template())
    manifest = template["job_configuration"]["job_manifest"]
    pod_template = manifest["spec"]["template"]
    pod_template.setdefault("metadata", {})["labels"] = dict(POD_LABELS)
    pod = pod_template["spec"]
    manifest["spec"]["activeDeadlineSeconds"] = "{{ active_deadline_seconds }}"
    (container,) = pod["containers"]
    container.update(copy.deepcopy(CONTAINER_PATCH))
    # the scheduler reserves disk only for a request (upstream's template has cpu and memory)
    container["resources"]["requests"]["ephemeral-storage"] = "{{ ephemeral_storage_request }}"
    container["resources"]["limits"]["ephemeral-storage"] = "{{ ephemeral_storage_limit }}"
    pod.update(copy.deepcopy(POD_PATCH))
    template["variables"] = _variables_schema()
    return template


def base_job_template() -> dict[str, Any]:
    """The template as a dict (what `flows setup` applies)."""
    return build()


def template_json() -> str:
    """The template as the chart stores it: indented, keys in model order, newline at the end."""
    return json.dumps(base_job_template(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(template_json())
