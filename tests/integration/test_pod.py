"""The flow-run pod's main process (`python -m flows.prefect.pod`, the pool's command) run
as a worker runs it, against a real Prefect server, SeaweedFS and DuckDB: no worker here, so
this test decides when each "pod" starts and stops.

- SIGTERM during load with the behaviour prefect-kubernetes sets for `backoffLimit: 0`:
  the pod itself reschedules the run (AwaitingRetry), kills its engine and attempt (a
  spawned one: the engine holds no dlt), exits 0; the next pod for the same flow run
  resumes from the state store, every row exactly once.
- SIGTERM without it: the engine reports the run Crashed, the pod exits 128 + SIGTERM.
- SIGTERM when the API cannot be reached: exit 1, so that the worker reports a crash.
- a flow whose module does not import (a wrong project folder): the run ends Failed with
  one line, not Crashed, so the crash automation does not rerun the same error.
- no flow run id, or a bad FLOWS_PREWARM_ATTEMPT: one line naming the setting, exit 2, no
  engine started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, StateType

from devstack.ports import free_port
from devstack.stack import LocalStack
from tests.integration.helpers import (
    artifacts,
    exact,
    flow_run_processes,
    serving,
    start,
    synthetic_counts,
    wait_for_artifact,
    warehouse,
)

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pod")]

POD = [sys.executable, "-m", "flows.prefect.pod"]
BEHAVIOR = "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("stack"), api_port=free_port(avoid_plus=None))
    with serving(stack, worker=False):
        yield stack


def new_run(client: SyncPrefectClient, rows: int) -> FlowRun:
    return start(client, "synthetic-daily", parameters={"source_options": {"rows": rows}})


def start_pod(stack: LocalStack, run_id: UUID, tmp: Path, **env: str) -> subprocess.Popen[str]:
    """The pod's command with what the worker gives it: the run's id and the stack's env."""
    tmp.mkdir(exist_ok=True)
    pod_env = {
        **os.environ,
        **stack.run_env(),
        "PREFECT__FLOW_RUN_ID": str(run_id),
        # a long load, in small jobs, so that the stop lands in it
        "DATA_WRITER__FILE_MAX_ITEMS": "2000",
        "LOAD__WORKERS": "1",
        "TMPDIR": str(tmp),
        **env,
    }
    return subprocess.Popen(
        POD,
        env=pod_env,
        cwd=stack.run_env()["FLOWS_PROJECT_DIR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_in_load(client: SyncPrefectClient, run_id: UUID, pod: subprocess.Popen[str]) -> str:
    """SIGTERM once the run is loading, as the kubelet stops an evicted pod; its output."""
    wait_for_artifact(client, run_id, "synthetic-load-progress")
    pod.send_signal(signal.SIGTERM)
    out, _ = pod.communicate(timeout=60)
    return out


def test_pod_stopped_during_load_reschedules_its_run_and_the_next_pod_resumes_exactly(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    rows = 120_000
    run = new_run(client, rows)
    first = start_pod(stack, run.id, tmp_path / "pod1", **{BEHAVIOR: "reschedule"})
    wait_for_artifact(client, run.id, "synthetic-load-progress")
    # the engine of a declared pipeline's flow holds no dlt, so its attempt is a fresh
    # interpreter (flows/attempt/start.py), not a fork with the engine's command line
    [attempt] = flow_run_processes(run.id, "flows-attempt")
    assert attempt.cmdline()[1:] == ["-m", "flows.attempt.child"], attempt.cmdline()
    # prewarmed: started by the engine before it imported Prefect and set the run Running
    started = client.read_flow_run(run.id).start_time
    assert started is not None and attempt.create_time() < started.timestamp()
    out = stop_in_load(client, run.id, first)

    assert first.returncode == 0, out[-3000:]
    assert "SIGTERM: rescheduled: the run is AwaitingRetry" in out, out[-3000:]
    stopped = client.read_flow_run(run.id)
    assert stopped.state is not None and stopped.state.name == "AwaitingRetry", stopped.state
    assert flow_run_processes(run.id) == []  # the engine and its attempt are gone

    second = start_pod(stack, run.id, tmp_path / "pod2", **{BEHAVIOR: "reschedule"})
    out, _ = second.communicate(timeout=400)
    assert second.returncode == 0, out[-3000:]
    final = client.read_flow_run(run.id)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
    report = artifacts(client, run.id)["synthetic-report"][-1].data
    assert "| **rows extracted (this attempt)** | 0 |" in report, report
    counts = synthetic_counts(warehouse(stack.root / "home", "synthetic"))
    assert {k: counts[k] for k in exact(rows)} == exact(rows)
    assert counts["loads"] == counts["distinct_loads"]


def test_a_flow_that_does_not_import_ends_failed_not_crashed(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    from prefect.client.schemas.objects import State

    synthetic = client.read_deployment_by_name("synthetic-daily/synthetic-daily")
    broken = client.create_deployment(
        flow_id=synthetic.flow_id,
        name="does-not-import",
        entrypoint="orders_api.flows:daily",  # not in the folder the run starts in
        work_pool_name=stack.pool,
        pull_steps=synthetic.pull_steps,
    )
    run = client.create_flow_run_from_deployment(broken)
    pod = start_pod(stack, run.id, tmp_path / "pod")
    out, _ = pod.communicate(timeout=120)
    assert pod.returncode == 1, out[-3000:]
    final = client.read_flow_run(run.id)
    assert final.state is not None and final.state.type == StateType.FAILED, final.state
    assert final.state.message == (
        "the flow did not load: ModuleNotFoundError: No module named 'orders_api'"
    )
    # what the worker does on a failed Job: propose Crashed, which Prefect refuses now
    crashed = client.set_flow_run_state(run.id, State(type=StateType.CRASHED))
    assert crashed.status.value == "ABORT", crashed
    assert client.read_flow_run(run.id).state.type == StateType.FAILED  # type: ignore[union-attr]


def test_pod_stopped_without_reschedule_lets_the_engine_report_the_crash(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    run = new_run(client, 240_000)
    pod = start_pod(stack, run.id, tmp_path / "pod", **{BEHAVIOR: ""})
    out = stop_in_load(client, run.id, pod)

    assert pod.returncode == 128 + signal.SIGTERM, out[-3000:]
    kinds = [s.type for s in client.read_flow_run_states(run.id)]
    assert StateType.CRASHED in kinds, kinds
    assert flow_run_processes(run.id) == []


def test_pod_stopped_at_its_run_deadline_fails_its_run_instead_of_rescheduling_it(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """The Job's activeDeadlineSeconds passed (its clock started before the pod's, by at most
    the start timeout): a rerun would meet the same bound, so the run ends Failed, its
    message naming the bound, even with the reschedule behaviour."""
    run = new_run(client, 240_000)
    bounds = {"FLOWS_RUN_BOUNDS": "600/600", BEHAVIOR: "reschedule"}  # any stop is at the deadline
    pod = start_pod(stack, run.id, tmp_path / "pod", **bounds)
    out = stop_in_load(client, run.id, pod)

    assert pod.returncode == 1, out[-3000:]
    ended = client.read_flow_run(run.id).state
    assert ended is not None and ended.type == StateType.FAILED, ended
    assert "run deadline of 600 s (job variable active_deadline_seconds)" in (ended.message or "")
    assert flow_run_processes(run.id) == []


def test_pod_with_bad_run_bounds_names_the_setting_and_starts_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        POD,
        env={**os.environ, "PREFECT__FLOW_RUN_ID": str(uuid4()), "FLOWS_RUN_BOUNDS": "ten"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "error: FLOWS_RUN_BOUNDS = 'ten' is not <start timeout>/<run deadline> in seconds"
    )


def test_pod_without_a_flow_run_id_names_the_setting_and_starts_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT__FLOW_RUN_ID"}
    proc = subprocess.run(
        POD,
        env={**env, "PREFECT__FLOW_RUN_ID": "not-a-run"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: PREFECT__FLOW_RUN_ID = 'not-a-run' is not a flow run id"
    ]
    assert proc.stdout == ""


def test_pod_with_a_bad_prewarm_setting_names_it_and_starts_nothing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PREFECT__FLOW_RUN_ID": "00000000-0000-4000-8000-000000000001",
        "FLOWS_PREWARM_ATTEMPT": "yes",
    }
    proc = subprocess.run(POD, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: FLOWS_PREWARM_ATTEMPT = 'yes' is not 0 or 1"
    ]
    assert proc.stdout == ""


def test_pod_that_cannot_reschedule_fails_so_that_the_worker_reports_a_crash(
    tmp_path: Path,
) -> None:
    """The API is unreachable when the SIGTERM comes: exit 1 (a failed Job, reported Crashed
    and rerun by the automation), not 0 with the run left Running."""
    closed = f"http://127.0.0.1:{free_port(avoid_plus=None)}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": closed,
        "PREFECT_CLIENT_MAX_RETRIES": "0",
        "PREFECT__FLOW_RUN_ID": "00000000-0000-4000-8000-000000000001",
        BEHAVIOR: "reschedule",
    }
    pod = subprocess.Popen(
        POD, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    time.sleep(0.5)  # the engine is still importing Prefect
    pod.send_signal(signal.SIGTERM)
    out, _ = pod.communicate(timeout=120)
    assert pod.returncode == 1, out[-3000:]
    assert "SIGTERM: rescheduling flow run 00000000-0000-4000-8000-000000000001 failed" in out
