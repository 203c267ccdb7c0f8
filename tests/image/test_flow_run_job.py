"""The chart's pods and the worker's flow-run Job, run from the platform image with Docker
against a real Prefect server, PostgreSQL and SeaweedFS on the host.

- the chart's deploy hook (its wait-for-server init container, then `flows setup` and
  `prefect deploy --all` in /opt/flows) registers the kubernetes pool and the deployments;
- the flow-run Job is built by prefect-kubernetes' own code inside the image, with the
  chart's worker environment (tests/image/worker_render.py), and its container runs as a
  kubelet would run it (tests/image/kube_docker.py), until the flow run is Completed;
- a Job container killed with SIGKILL during load, its flow run rescheduled, and a fresh
  container for the same flow run resumes from the state store: nothing extracted again,
  every row exactly once in PostgreSQL;
- a Job container stopped during load as the kubelet stops it on eviction (SIGTERM to PID 1,
  a grace period): the pod's own supervisor (flows/prefect/pod.py) reschedules the run
  (AwaitingRetry) and exits 0, and a fresh container resumes it exactly once, as above.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Scheduled

from devstack.stack import BUCKET, LocalStack
from flows.kube.pool_template import FlowRunVariables
from tests.chart.chart import FULLNAME, Rendered
from tests.image import kube_docker
from tests.image.conftest import IMAGE, REPO, BuiltImage
from tests.integration.helpers import TERMINAL, artifacts, pg_counts

# one worker builds the image once (pytest-xdist --dist loadgroup)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1200),
    pytest.mark.xdist_group("image"),
]

DEPLOYMENT = "synthetic-daily"
MANIFEST_PREFIX = "JOB_MANIFEST "
# a load long enough to be interrupted: 60 files of 2,000 rows, loaded one at a time
LOAD_ROWS = 120_000


# ---------- helpers ----------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def run_pod(
    pod: dict[str, Any],
    node: kube_docker.Node,
    pod_name: str,
    containers: list[str],
    timeout: float = 300,
) -> list[kube_docker.Finished]:
    """Runs a pod's init containers, then its (single) container, each to its end."""
    results = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        assert container["image"] == IMAGE, container["image"]
        name = f"{pod_name}-{container['name']}"
        containers.append(name)
        result = kube_docker.run(
            name, kube_docker.docker_run_args(pod, container, node, pod_name), timeout
        )
        assert result.code == 0, str(result)
        results.append(result)
    return results


def worker_pool(chart: Rendered) -> str:
    worker = chart.get("Deployment", f"{FULLNAME}-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    return str(command[command.index("--pool") + 1])


@dataclass
class Worker:
    """The chart's worker on the docker "node": builds a flow run's Job, starts its pod."""

    chart: Rendered
    node: kube_docker.Node
    containers: list[str]
    scratch: Path

    def manifest(self, flow_run_id: UUID) -> dict[str, Any]:
        """The Job the chart's worker would create for the flow run, built inside the image
        in the worker container's setup (its env, user, read-only root, /tmp emptyDir)."""
        deployment = self.chart.get("Deployment", f"{FULLNAME}-worker")
        pod = deployment["spec"]["template"]["spec"]
        worker = next(c for c in pod["containers"] if c["name"] == "worker")
        scripts = self.scratch / "worker-render"
        scripts.mkdir(mode=0o755, exist_ok=True)
        shutil.copyfile(Path(__file__).with_name("worker_render.py"), scripts / "worker_render.py")
        (scripts / "worker_render.py").chmod(0o644)
        pod_name = unique(f"{FULLNAME}-worker")
        self.containers.append(pod_name)
        command = ["python", "/render/worker_render.py", str(flow_run_id), worker_pool(self.chart)]
        result = kube_docker.run(
            pod_name,
            kube_docker.docker_run_args(
                pod,
                worker,
                self.node,
                pod_name,
                command=command,
                extra_mounts=[(scripts, "/render")],
            ),
            timeout=180,
        )
        assert result.code == 0, str(result)
        for line in result.logs.splitlines():
            if line.startswith(MANIFEST_PREFIX):
                manifest: dict[str, Any] = json.loads(line[len(MANIFEST_PREFIX) :])
                return manifest
        raise AssertionError(f"no manifest printed:\n{result.logs[-3000:]}")

    def start(self, manifest: dict[str, Any]) -> str:
        """Starts the Job's pod container (detached); returns the container name."""
        pod = manifest["spec"]["template"]["spec"]
        assert len(pod["containers"]) == 1 and not pod.get("initContainers")
        # the Job's name, then its pod's suffix, as Kubernetes names them
        pod_name = f"{manifest['metadata']['generateName']}{uuid.uuid4().hex[:5]}"
        pod_name = f"{pod_name}-{uuid.uuid4().hex[:5]}"
        self.containers.append(pod_name)
        kube_docker.start(
            pod_name, kube_docker.docker_run_args(pod, pod["containers"][0], self.node, pod_name)
        )
        return pod_name

    def run(self, flow_run_id: UUID) -> str:
        """Builds the flow run's Job and starts it; returns the container name."""
        return self.start(self.manifest(flow_run_id))


def container_state(name: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(
        kube_docker.docker("inspect", "--format", "{{json .State}}", name)
    )
    return state


def wait_for_run(
    client: SyncPrefectClient, run_id: UUID, container: str, timeout: float = 400
) -> FlowRun:
    """Waits until the flow run is terminal and its container has exited 0."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        exited = not container_state(container)["Running"]
        if run.state is not None and run.state.type in TERMINAL:
            finished = kube_docker.wait(container, timeout=120)
            assert finished.code == 0, str(finished)
            return run
        if exited:
            raise AssertionError(
                f"the container exited while the run is {run.state}:\n"
                f"{kube_docker.logs_of(container)[-4000:]}"
            )
        time.sleep(0.5)
    raise TimeoutError(
        f"flow run {run_id} not finished after {timeout} s:\n"
        f"{kube_docker.logs_of(container)[-4000:]}"
    )


def job_variables(deployment: str) -> dict[str, Any]:
    """The deployment's job_variables as prefect.yaml writes them."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = next(d for d in spec["deployments"] if d["name"] == deployment)
    variables: dict[str, Any] = found["work_pool"]["job_variables"]
    return variables


def destination(stack: LocalStack, database: str) -> str:
    stack.postgres.create_database(database)
    return stack.postgres.dsn(database)


def run_env(dsn: str, **extra: str) -> dict[str, str]:
    """Per-run env (job variable `env`): the PostgreSQL destination on the host."""
    return {
        "PIPELINES__DESTINATION": "postgres",
        "DESTINATION__POSTGRES__CREDENTIALS": dsn,
        **extra,
    }


def _has_events(dsn: str) -> bool:
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute("SELECT to_regclass('synthetic.events') IS NOT NULL")
        row = cur.fetchone()
        return bool(row and row[0])


def start_long_load(
    client: SyncPrefectClient, worker: Worker, dsn: str, state_url: str
) -> tuple[FlowRun, str]:
    """Starts a flow run with a long load (small files, one load worker) in a first Job
    container; returns the run and the container once the load has begun, to interrupt it."""
    dep = client.read_deployment_by_name(f"{DEPLOYMENT}/{DEPLOYMENT}")
    run = client.create_flow_run_from_deployment(
        dep.id,
        parameters={"source_options": {"rows": LOAD_ROWS}},
        job_variables={
            "state_url": state_url,
            "env": run_env(dsn, DATA_WRITER__FILE_MAX_ITEMS="2000", LOAD__WORKERS="1"),
        },
    )
    first = worker.run(run.id)
    deadline = time.monotonic() + 300
    while "synthetic-load-progress" not in artifacts(client, run.id):
        assert container_state(first)["Running"], kube_docker.logs_of(first)[-4000:]
        assert time.monotonic() < deadline, "the run never reached load"
        time.sleep(0.2)
    return run, first


def resume_exactly_once(client: SyncPrefectClient, worker: Worker, run_id: UUID, dsn: str) -> None:
    """A fresh container for the interrupted (and rescheduled) run completes it from the
    state store: nothing extracted again, every row exactly once in PostgreSQL."""
    rows_before = pg_counts(dsn)["events"] if _has_events(dsn) else 0
    assert rows_before < LOAD_ROWS, "load finished before the interruption: make it longer"
    second = worker.run(run_id)
    final = wait_for_run(client, run_id, second)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state

    report = artifacts(client, run_id)["synthetic-report"][-1].data
    assert "| **rows extracted (this attempt)** | 0 |" in report, report
    assert "pending package finished" in report, report
    counts = pg_counts(dsn)
    assert counts["events"] == counts["distinct_ids"] == LOAD_ROWS, counts
    assert counts["tags"] == 2 * LOAD_ROWS and counts["orphan_tags"] == 0, counts
    assert counts["loads"] == counts["distinct_loads"], counts


# ---------- fixtures ----------


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Any:
    with get_client(sync_client=True) as c:
        yield c


@pytest.fixture(scope="module")
def deployed(
    image: BuiltImage,
    chart: Rendered,
    node: kube_docker.Node,
    stack: LocalStack,
    containers: list[str],
) -> list[kube_docker.Finished]:
    """The chart's deploy-flows hook Job, run from the image: pool, limits, deployments."""
    job = chart.get("Job", f"{FULLNAME}-deploy-flows")
    pod = job["spec"]["template"]["spec"]
    return run_pod(pod, node, unique(f"{FULLNAME}-deploy-flows"), containers)


@pytest.fixture
def worker(
    chart: Rendered, node: kube_docker.Node, containers: list[str], tmp_path: Path
) -> Worker:
    return Worker(chart, node, containers, tmp_path)


# ---------- tests ----------


def test_chart_deploy_hook_registers_pool_and_deployments_from_the_image(
    deployed: list[kube_docker.Finished], client: SyncPrefectClient, chart: Rendered
) -> None:
    pool = client.read_work_pool(worker_pool(chart))
    assert pool.type == "kubernetes"
    defaults = pool.base_job_template["variables"]["properties"]
    assert defaults["image"]["default"] == IMAGE
    assert defaults["storage_secret_name"]["default"] == f"{FULLNAME}-storage"
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    registered = {d.name: d for d in client.read_deployments()}
    assert sorted(registered) == sorted(entry["name"] for entry in spec["deployments"])
    for entry in spec["deployments"]:
        dep = registered[entry["name"]]
        assert dep.work_pool_name == pool.name
        assert dep.job_variables["image"] == IMAGE
        assert dep.entrypoint == entry["entrypoint"]
        assert dep.pull_steps == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "/opt/flows",
                }
            }
        ]


def test_flow_run_job_runs_to_completion(
    deployed: list[kube_docker.Finished],
    client: SyncPrefectClient,
    stack: LocalStack,
    worker: Worker,
) -> None:
    rows = 20_000
    dsn = destination(stack, "image_job")
    dep = client.read_deployment_by_name(f"{DEPLOYMENT}/{DEPLOYMENT}")
    run = client.create_flow_run_from_deployment(
        dep.id,
        parameters={"source_options": {"rows": rows}},
        job_variables={"state_url": f"s3://{BUCKET}/state-image-job", "env": run_env(dsn)},
    )
    manifest = worker.manifest(run.id)

    # what the worker built, before running it
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    wanted = job_variables(DEPLOYMENT)
    assert container["image"] == IMAGE
    assert container["args"] == shlex.split(FlowRunVariables.model_fields["command"].default)
    assert env["PREFECT__FLOW_RUN_ID"]["value"] == str(run.id)
    assert env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-api"
    assert env["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"]["value"] == "reschedule"
    assert env["STATE__URL"]["value"] == f"s3://{BUCKET}/state-image-job"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    disk = {
        kind: wanted.get(key, FlowRunVariables.model_fields[key].default)
        for kind, key in (
            ("limits", "ephemeral_storage_limit"),
            ("requests", "ephemeral_storage_request"),
        )
    }
    assert container["resources"] == {
        "limits": {
            "cpu": wanted["cpu_limit"],
            "memory": wanted["memory_limit"],
            "ephemeral-storage": disk["limits"],
        },
        "requests": {
            "cpu": wanted["cpu_request"],
            "memory": wanted["memory_request"],
            "ephemeral-storage": disk["requests"],
        },
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == f"{FULLNAME}-flow-run"
    assert manifest["spec"]["backoffLimit"] == 0

    name = worker.start(manifest)
    final = wait_for_run(client, run.id, name)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
    logs = kube_docker.logs_of(name)
    found = artifacts(client, run.id)
    report = found["synthetic-report"][-1].data
    assert "| events | 20,000 |" in report and "| events__tags | 40,000 |" in report, report
    summary = found["synthetic-load-summary"][-1].data
    assert name in summary, f"the pod name is not in the load summary:\n{summary}"
    counts = pg_counts(dsn)
    assert counts["events"] == counts["distinct_ids"] == rows, (counts, logs[-3000:])
    assert counts["tags"] == 2 * rows and counts["orphan_tags"] == 0
    assert counts["loads"] == counts["distinct_loads"]


def test_job_killed_during_load_resumes_in_a_fresh_container(
    deployed: list[kube_docker.Finished],
    client: SyncPrefectClient,
    stack: LocalStack,
    worker: Worker,
) -> None:
    dsn = destination(stack, "image_kill")
    run, first = start_long_load(client, worker, dsn, f"s3://{BUCKET}/state-image-kill")
    kube_docker.docker("kill", "--signal", "KILL", first)
    assert kube_docker.wait(first, timeout=60).code == 137
    killed = client.read_flow_run(run.id)
    assert killed.state is not None and killed.state.type == StateType.RUNNING, killed.state

    # what Prefect does to a run whose pod was lost: schedule it again, for a new pod
    client.set_flow_run_state(run.id, Scheduled(), force=True)
    resume_exactly_once(client, worker, run.id, dsn)


def test_job_stopped_during_load_is_rescheduled_and_resumes_in_a_fresh_container(
    deployed: list[kube_docker.Finished],
    client: SyncPrefectClient,
    stack: LocalStack,
    worker: Worker,
) -> None:
    """An eviction or a node drain: the pod itself schedules its run again (nothing here
    touches the run's state), so the next pod picks it up without a crash to recover from."""
    dsn = destination(stack, "image_stop")
    run, first = start_long_load(client, worker, dsn, f"s3://{BUCKET}/state-image-stop")
    # as the kubelet stops a container: SIGTERM to PID 1, SIGKILL after the grace period
    kube_docker.docker("stop", "--time", "30", first, timeout=120)
    stopped = kube_docker.wait(first, timeout=60)
    assert stopped.code == 0, str(stopped)  # 137: the grace period ran out
    assert "SIGTERM: rescheduled" in stopped.logs, stopped.logs[-4000:]
    rescheduled = client.read_flow_run(run.id)
    state = rescheduled.state
    assert state is not None and state.type == StateType.SCHEDULED, state
    assert state.name == "AwaitingRetry", state

    resume_exactly_once(client, worker, run.id, dsn)


def test_backfill_job_runs_tasks_defined_in_the_entrypoint_file(
    deployed: list[kube_docker.Finished],
    client: SyncPrefectClient,
    stack: LocalStack,
    worker: Worker,
) -> None:
    """backfill in one Job: with no part deployment its parts run in the parent's process,
    each part's attempt child process still gets its source function."""
    dsn = destination(stack, "image_backfill")
    dep = client.read_deployment_by_name("backfill/backfill")
    run = client.create_flow_run_from_deployment(
        dep.id,
        parameters={
            "start_date": "2024-01-01",
            "end_date": "2024-01-06",
            "chunk_days": 3,
            "rows_per_day": 10,
            "part_deployment": "fanout-part/not-deployed",  # parts in this one Job
        },
        job_variables={"state_url": f"s3://{BUCKET}/state-image-backfill", "env": run_env(dsn)},
    )
    name = worker.run(run.id)
    final = wait_for_run(client, run.id, name)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT day) FROM daily.daily_events")
        assert cur.fetchall() == [(60, 6)]
