"""`flows watchdog`: no flow run holds a slot for ever.

prefect-kubernetes 0.8.0 declares `pod_watch_timeout_seconds` and never reads it: a pod that
cannot start (unschedulable, `ImagePullBackOff`, a Secret named in `envFrom` that does not
exist) leaves its flow run Pending, holding a pool slot, indefinitely. The watchdog (a
container of the chart's worker pod, with the worker's ServiceAccount) passes every
`--interval` seconds:

- a flow run of the pool Pending for longer than its `start_timeout_seconds` (the run's job
  variables, else its deployment's, else the pool template's default) is ended with the
  pod's reason in its state message, then its Job is deleted. A reason a rerun cannot fix
  (the image cannot be pulled, a Secret or key is missing, the Job was refused) ends it
  Failed: the crash-rerun automation reruns Crashed runs only. Anything else (no node has
  room yet) ends it Crashed, and the automation reruns it, bounded (flows/prefect/reruns.py).
  Ending it through Prefect's orchestration (not forced) gives back its slots.
- a flow run evicted twice (its pods' status reason `Evicted`: over its ephemeral storage,
  or the node's disk or memory under pressure) is not rerun a third time on the same spec:
  the eviction kills with little or no grace, the pod's SIGTERM path may never run, and a
  rerun meets the same limit. It is ended Failed with Kubernetes' message, which names the
  resource; the first eviction is rerun (the state store makes it resume).
- leaked tag-limit slots are given back (flows/kube/slots.py).

The pod reasons are Kubernetes' own enumerations (a waiting container's `reason`, the
PodScheduled condition's, a FailedCreate event's), never their messages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from flows.kube.slots import release_leaked

START_TIMEOUT = "start_timeout_seconds"
FLOW_RUN_LABEL = "prefect.io/flow-run-id"
# a container that waits for one of these will wait for ever: no rerun of the same spec helps
UNFIXABLE_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",  # a Secret, ConfigMap or key that does not exist
        "CreateContainerError",
    }
)


@dataclass(frozen=True)
class StartFailure:
    reason: str
    detail: str
    rerun_helps: bool


class Cluster(Protocol):
    """What the watchdog reads and deletes in the flow runs' namespace."""

    def pods(self, flow_run_id: UUID) -> list[Any]: ...
    def failed_creates(self, flow_run_id: UUID) -> list[str]: ...
    def delete_job(self, flow_run_id: UUID) -> None: ...
    def evicted(self) -> dict[UUID, list[Any]]: ...


def diagnose(pods: list[Any], failed_creates: list[str]) -> StartFailure:
    """Why the flow run's pod did not start, from `kubernetes.client` V1Pod models and the
    messages of its Job's FailedCreate events."""
    for pod in pods:
        status = pod.status
        if status is None:
            continue
        for container in [
            *(status.init_container_statuses or []),
            *(status.container_statuses or []),
        ]:
            waiting = container.state.waiting if container.state else None
            if waiting is not None and waiting.reason:
                return StartFailure(
                    waiting.reason, waiting.message or "", waiting.reason not in UNFIXABLE_WAITING
                )
        for condition in status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return StartFailure(
                    condition.reason or "Unschedulable", condition.message or "", True
                )
    if not pods and failed_creates:  # refused at creation: admission, quota, an invalid spec
        return StartFailure("FailedCreate", failed_creates[-1], False)
    if not pods:
        return StartFailure("NoPod", "no pod was created for its Job", True)
    return StartFailure("Pending", "its pod is still Pending", True)


def start_timeout(run: Any, deployment: Any | None, pool_default: int) -> int:
    for variables in (run.job_variables, deployment.job_variables if deployment else None):
        if variables and variables.get(START_TIMEOUT) is not None:
            return int(variables[START_TIMEOUT])
    return pool_default


def pending_since(client: Any, flow_run_id: UUID) -> datetime | None:
    """When the run's current streak of Pending states began (InfrastructurePending, which
    the worker's observer adds, does not restart the clock)."""
    states = sorted(client.read_flow_run_states(flow_run_id), key=lambda s: s.timestamp)
    since = None
    for state in reversed(states):
        if not state.is_pending():
            break
        since = state.timestamp
    return since


def overdue(client: Any, pool: str, now: datetime) -> Iterator[tuple[Any, int]]:
    """Flow runs of the pool Pending past their start timeout, with that timeout."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    template = client.read_work_pool(pool).base_job_template
    default = int(template["variables"]["properties"].get(START_TIMEOUT, {}).get("default", 600))
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
    )
    deployments: dict[UUID, Any] = {}
    for run in runs:
        deployment = None
        if run.deployment_id is not None:
            if run.deployment_id not in deployments:
                deployments[run.deployment_id] = client.read_deployment(run.deployment_id)
            deployment = deployments[run.deployment_id]
        bound = start_timeout(run, deployment, default)
        since = pending_since(client, run.id)
        if since is not None and (now - since).total_seconds() >= bound:
            yield run, bound


def end_start(client: Any, cluster: Cluster | None, run: Any, bound: int) -> str:
    """Ends a run whose pod did not start: the state first (refused if it started
    meanwhile), then its Job."""
    from prefect.states import Crashed, Failed
    from prefect.utilities.engine import propose_state_sync

    failure = (
        diagnose(cluster.pods(run.id), cluster.failed_creates(run.id))
        if cluster is not None
        else StartFailure("Pending", "its infrastructure did not start", True)
    )
    message = f"did not start within {bound} s (start_timeout_seconds): {failure.reason}"
    message += f": {failure.detail}" if failure.detail else ""
    if not failure.rerun_helps:
        message += " (not rerun: a rerun cannot fix this)"
    state: Any = Crashed(message=message) if failure.rerun_helps else Failed(message=message)
    proposed: Any = propose_state_sync(client, state, flow_run_id=run.id)
    if proposed.type != state.type:
        return f"flow run {run.name} ({run.id}): started meanwhile ({proposed.name})"
    if cluster is not None:
        cluster.delete_job(run.id)
    return f"flow run {run.name} ({run.id}): {proposed.name}: {message}"


EVICTIONS_RERUN = 1  # a flow run evicted more often than this is not rerun again


def end_evicted(client: Any, cluster: Cluster) -> list[str]:
    """Fails each flow run evicted more than EVICTIONS_RERUN times that has not ended."""
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Failed
    from prefect.utilities.engine import propose_state_sync

    done = []
    for flow_run_id, pods in cluster.evicted().items():
        if len(pods) <= EVICTIONS_RERUN:
            continue
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            continue
        if run.state is None or run.state.is_final():
            continue
        last = pods[-1].status.message if pods[-1].status else ""
        message = (
            f"evicted {len(pods)} times ({last}): not rerun again, the next pod of the same "
            "size would meet the same limit; raise ephemeral_storage_limit and "
            "tmp_size_limit for disk, memory_limit for memory"
        )
        proposed: Any = propose_state_sync(
            client, Failed(message=message), flow_run_id=flow_run_id, force=True
        )
        done.append(f"flow run {run.name} ({flow_run_id}): {proposed.name}: {message}")
    return done


def watch_once(client: Any, pool: str, cluster: Cluster | None, now: datetime) -> list[str]:
    done = [end_start(client, cluster, run, bound) for run, bound in overdue(client, pool, now)]
    if cluster is not None:
        done += end_evicted(client, cluster)
    return done + release_leaked(client)


class KubernetesCluster:
    """The flow runs' namespace, through the worker's ServiceAccount (in the pod) or the
    local kubeconfig."""

    def __init__(self, namespace: str) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.namespace = namespace
        self.core = client.CoreV1Api()
        self.batch = client.BatchV1Api()

    def _selector(self, flow_run_id: UUID) -> str:
        return f"{FLOW_RUN_LABEL}={flow_run_id}"

    def pods(self, flow_run_id: UUID) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=self._selector(flow_run_id)
            ).items
        )

    def failed_creates(self, flow_run_id: UUID) -> list[str]:
        messages = []
        for job in self.batch.list_namespaced_job(
            self.namespace, label_selector=self._selector(flow_run_id)
        ).items:
            name = job.metadata.name if job.metadata else ""
            events = self.core.list_namespaced_event(
                self.namespace,
                field_selector=f"involvedObject.kind=Job,involvedObject.name={name}",
            ).items
            messages += [e.message or "" for e in events if e.reason == "FailedCreate"]
        return messages

    def evicted(self) -> dict[UUID, list[Any]]:
        """Evicted flow-run pods (kept until their Job's TTL), by flow run, oldest first."""
        found: dict[UUID, list[Any]] = {}
        pods: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=FLOW_RUN_LABEL, field_selector="status.phase=Failed"
        ).items
        for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
            if pod.status is not None and pod.status.reason == "Evicted":
                found.setdefault(UUID(pod.metadata.labels[FLOW_RUN_LABEL]), []).append(pod)
        return found

    def delete_job(self, flow_run_id: UUID) -> None:
        self.batch.delete_collection_namespaced_job(
            self.namespace,
            label_selector=self._selector(flow_run_id),
            propagation_policy="Background",
        )


def watch(
    pool: str, namespace: str | None, interval: float, once: bool, alive: Path | None = None
) -> Iterator[str]:
    """The loop: a pass every `interval` seconds; a failed pass is reported and retried at
    the next (the API or the cluster may be back by then). `alive` is touched after each
    pass: a watchdog stuck in one is restarted by its probe."""
    from prefect.client.orchestration import get_client

    cluster = KubernetesCluster(namespace) if namespace else None
    while True:
        try:
            with get_client(sync_client=True) as client:
                yield from watch_once(client, pool, cluster, datetime.now(UTC))
        except Exception as err:
            if once:
                raise
            yield f"pass failed, next in {interval:g} s: {type(err).__name__}: {err}"
        if alive is not None:
            alive.touch()
        if once:
            return
        time.sleep(interval)
