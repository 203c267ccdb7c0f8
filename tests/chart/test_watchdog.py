"""No flow run holds a slot for ever: the watchdog against a real Prefect 3.8.8 server.

No Kubernetes API server runs here: the pods the watchdog reads are `kubernetes.client` V1Pod
models deserialized from the JSON Kubernetes serves for a pod stuck in each way, and the Job
deletions it asks for are recorded. Everything on the Prefect side is the real server: the
flow runs, their states and orchestration, the deployment's concurrency slot, the tag
limit's leases."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from kubernetes.client import ApiClient
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Crashed, Pending, Running, Scheduled

from devstack.postgres import Postgres
from flows.kube.pool_template import base_job_template
from flows.kube.slots import leaked_tag_slots
from flows.kube.watchdog import diagnose, watch_once
from tests.chart.chart import REPO, Rendered, named_container
from tests.chart.services import AUTH_STRING, PrefectServer, prefect_server_for, run_rendered

pytestmark = pytest.mark.integration

POOL = "dlt-watched"


def pod(status: dict[str, Any]) -> Any:
    """A V1Pod as the Kubernetes client deserializes it from the API's JSON."""
    body = json.dumps({"apiVersion": "v1", "kind": "Pod", "status": status})
    return ApiClient().deserialize(body, "V1Pod", "application/json")


IMAGE_PULL = pod(
    {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "prefect-job",
                "image": "registry.example/flows:9.9",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "registry.example/flows:9.9"',
                    }
                },
            }
        ],
    }
)
UNSCHEDULABLE = pod(
    {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
            }
        ],
    }
)
MISSING_SECRET = pod(
    {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "prefect-job",
                "image": "flows:1",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": 'secret "warehouse-credentials" not found',
                    }
                },
            }
        ],
    }
)


EVICTED_FOR_DISK = pod(
    {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "Pod ephemeral local storage usage exceeds the total limit of containers 11Gi.",
    }
)


class StuckPods:
    """The flow runs' namespace as the watchdog sees it: each run's pods, its evicted pods,
    and the Jobs it deleted."""

    def __init__(self) -> None:
        self.by_run: dict[UUID, list[Any]] = {}
        self.evictions: dict[UUID, list[Any]] = {}
        self.deleted: list[UUID] = []

    def evicted(self) -> dict[UUID, list[Any]]:
        return self.evictions

    def pods(self, flow_run_id: UUID) -> list[Any]:
        return self.by_run.get(flow_run_id, [])

    def failed_creates(self, flow_run_id: UUID) -> list[str]:
        return []

    def delete_job(self, flow_run_id: UUID) -> None:
        self.deleted.append(flow_run_id)


@pytest.fixture(scope="module")
def prefect_server(
    tmp_path_factory: pytest.TempPathFactory, default: Rendered, postgres: Postgres
) -> Iterator[PrefectServer]:
    """On PostgreSQL, as in the chart: on SQLite, the server's tag-limit rule locks the
    database when a task run starts."""
    database = f"prefect_watchdog_{os.getpid()}"
    postgres.create_database(database)
    url = postgres.dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)
    with prefect_server_for(tmp_path_factory.mktemp("prefect-home"), default, url) as server:
        yield server


@pytest.fixture(scope="module")
def client(prefect_server: PrefectServer) -> Iterator[SyncPrefectClient]:
    with (
        temporary_settings(
            {PREFECT_API_URL: prefect_server.api_url, PREFECT_API_AUTH_STRING: AUTH_STRING}
        ),
        get_client(sync_client=True) as client,
    ):
        client.create_work_pool(
            WorkPoolCreate(name=POOL, type="kubernetes", base_job_template=base_job_template())
        )
        yield client


def pending_run(client: SyncPrefectClient, deployment_id: UUID, **job_variables: Any) -> Any:
    """A run the worker has submitted (Pending, holding the deployment's slot)."""
    run = client.create_flow_run_from_deployment(deployment_id, job_variables=job_variables)
    accepted = client.set_flow_run_state(run.id, Pending())
    assert accepted.state is not None and accepted.state.type == StateType.PENDING, accepted
    return client.read_flow_run(run.id)


def deployment(client: SyncPrefectClient, name: str, limit: int | None = None) -> UUID:
    flow_id = client.create_flow_from_name(f"watched-{name}")
    return client.create_deployment(
        flow_id=flow_id, name=name, work_pool_name=POOL, concurrency_limit=limit
    )


def test_a_pod_that_cannot_start_ends_its_run_with_the_cause_and_frees_the_slot(
    client: SyncPrefectClient,
) -> None:
    cluster = StuckPods()
    stuck_id = deployment(client, "image-pull", limit=1)
    stuck = pending_run(client, stuck_id)
    cluster.by_run[stuck.id] = [IMAGE_PULL]
    slots = client.read_deployment(stuck_id).global_concurrency_limit
    assert slots is not None and slots.active_slots == 1

    # not yet past the default start timeout (600 s): nothing happens
    assert watch_once(client, POOL, cluster, datetime.now(UTC) + timedelta(seconds=500)) == []
    assert cluster.deleted == []

    said = watch_once(client, POOL, cluster, datetime.now(UTC) + timedelta(seconds=601))
    ended = client.read_flow_run(stuck.id).state
    assert ended is not None and ended.type == StateType.FAILED, ended
    assert "did not start within 600 s" in (ended.message or "")
    assert "ImagePullBackOff" in (ended.message or "") and "not rerun" in (ended.message or "")
    assert cluster.deleted == [stuck.id] and len(said) == 1, said
    freed = client.read_deployment(stuck_id).global_concurrency_limit
    assert freed is not None and freed.active_slots == 0, "the slot is given back"
    assert pending_run(client, stuck_id).state.type == StateType.PENDING  # the next one runs


def test_the_start_timeout_is_the_runs_then_the_deployments_and_capacity_is_rerun(
    client: SyncPrefectClient,
) -> None:
    cluster = StuckPods()
    capacity = pending_run(client, deployment(client, "capacity"), start_timeout_seconds=60)
    cluster.by_run[capacity.id] = [UNSCHEDULABLE]
    secret = pending_run(client, deployment(client, "secret"), start_timeout_seconds=3600)
    cluster.by_run[secret.id] = [MISSING_SECRET]

    watch_once(client, POOL, cluster, datetime.now(UTC) + timedelta(seconds=120))
    crashed = client.read_flow_run(capacity.id).state
    assert crashed is not None and crashed.type == StateType.CRASHED, crashed
    assert "Unschedulable: 0/3 nodes are available" in (crashed.message or "")
    waiting = client.read_flow_run(secret.id).state
    assert waiting is not None and waiting.type == StateType.PENDING, "its own bound is 3600 s"
    assert cluster.deleted == [capacity.id]


def test_a_run_evicted_twice_is_failed_with_the_cause_not_rerun_again(
    client: SyncPrefectClient,
) -> None:
    """The first eviction is rerun (it resumes); the second ends the run Failed with
    Kubernetes' message, whatever state the crash rerun left it in."""
    cluster = StuckPods()
    run = pending_run(client, deployment(client, "disk-hungry"))
    client.set_flow_run_state(run.id, Running())
    client.set_flow_run_state(run.id, Crashed(message="pod evicted"))
    cluster.evictions[run.id] = [EVICTED_FOR_DISK]
    assert watch_once(client, POOL, cluster, datetime.now(UTC)) == []
    rerun = client.set_flow_run_state(run.id, Scheduled(name="AwaitingRetry"), force=True)
    assert rerun.state is not None and rerun.state.type == StateType.SCHEDULED

    cluster.evictions[run.id] = [EVICTED_FOR_DISK, EVICTED_FOR_DISK]
    said = watch_once(client, POOL, cluster, datetime.now(UTC))
    ended = client.read_flow_run(run.id).state
    assert ended is not None and ended.type == StateType.FAILED, ended
    assert "evicted 2 times (Pod ephemeral local storage usage exceeds" in (ended.message or "")
    assert "raise ephemeral_storage_limit" in (ended.message or "") and len(said) == 1
    assert watch_once(client, POOL, cluster, datetime.now(UTC)) == [], "an ended run stays"


def test_diagnose_decides_by_kubernetes_reason() -> None:
    assert diagnose([IMAGE_PULL], []).rerun_helps is False
    assert diagnose([MISSING_SECRET], []).reason == "CreateContainerConfigError"
    assert diagnose([UNSCHEDULABLE], []).rerun_helps is True
    refused = diagnose([], ['pods "x" is forbidden: violates PodSecurity "restricted"'])
    assert (refused.reason, refused.rerun_helps) == ("FailedCreate", False)


def test_a_leaked_tag_slot_is_reported_by_doctor_and_given_back(
    client: SyncPrefectClient, prefect_server: PrefectServer, default: Rendered
) -> None:
    tag = "dlt-leak"
    client.create_concurrency_limit(tag=tag, concurrency_limit=2)
    holders = []
    for _ in range(2):
        run = client.create_flow_run(flow=_flow_named("leaky"), tags=[tag])
        client.set_flow_run_state(run.id, Pending())
        client.set_flow_run_state(run.id, Running())
        task = client.create_task_run(
            task=_task_named("load", tag), flow_run_id=run.id, dynamic_key="0"
        )
        client.set_task_run_state(task.id, Running())  # the server takes the tag's slot
        holders.append((run, task))
    (dead_run, dead_task), (_live_run, live_task) = holders
    # the pod of the first dies mid-task: its flow run is reported Crashed, its task stays Running
    client.set_flow_run_state(dead_run.id, Crashed(message="pod OOMKilled"), force=True)
    limit = client.read_concurrency_limit_by_tag(tag)
    assert set(limit.active_slots) == {dead_task.id, live_task.id}

    leaked = leaked_tag_slots(client)
    assert [s.task_run_id for s in leaked] == [dead_task.id], leaked
    doctor = run_rendered(
        ["flows", "doctor", "--pool", POOL, "--prefect-yaml", str(REPO / "prefect.yaml")],
        prefect_server.client_env(),
        timeout=120,
    )
    assert f"task run {dead_task.id}" in doctor.stdout, doctor.stdout + doctor.stderr

    # the watchdog container's command as rendered, one pass, without a cluster here
    watchdog = named_container(default, "Deployment", "rel-prefect-dlt-worker", "watchdog")
    command = watchdog["command"] + watchdog.get("args", [])
    assert "--namespace" in command
    at = command.index("--namespace")
    command = command[:at] + command[at + 2 :] + ["--once", "--pool", POOL]
    done = run_rendered(command, prefect_server.client_env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"released a leaked slot: tag '{tag}': task run {dead_task.id}" in done.stdout
    assert client.read_concurrency_limit_by_tag(tag).active_slots == [live_task.id]
    client.set_task_run_state(live_task.id, Completed())


def _flow_named(name: str) -> Any:
    from prefect import flow

    return flow(name=name)(lambda: None)


def _task_named(name: str, tag: str) -> Any:
    from prefect import task

    return task(name=name, tags=[tag])(lambda: None)
