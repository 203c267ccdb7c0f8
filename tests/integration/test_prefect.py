"""The Prefect integration end to end: a real server on PostgreSQL, a process worker running
the deployments from prefect.yaml, SeaweedFS for state, DuckDB and PostgreSQL for data.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from devstack.ports import free_port
from devstack.stack import BUCKET, LocalStack
from flows.kube.setup import UNRESPONSIVE_AFTER_SECONDS, apply_unresponsive_crash
from tests.integration.helpers import (
    TERMINAL,
    artifacts,
    duck,
    exact,
    flow_run_processes,
    kill_attempt_at,
    serving,
    start,
    synthetic_counts,
    synthetic_killed_in_load,
    wait,
    wait_for_artifact,
    warehouse,
)

# every test here shares one stack: one pytest-xdist worker runs them all
pytestmark = pytest.mark.xdist_group("prefect")


class Hooks(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            Hooks.received.append(json.loads(body or b"{}"))
        except ValueError:
            Hooks.received.append({"invalid_json": body.decode(errors="replace")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port(avoid_plus=None)), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alert"
    server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhook: str) -> Iterator[LocalStack]:
    stack = LocalStack(
        tmp_path_factory.mktemp("stack"),
        api_port=free_port(avoid_plus=None),
        alert_webhook_url=webhook,
        # a run starts soon after it is created: most tests here start runs one after another
        extra_env={"PREFECT_WORKER_QUERY_SECONDS": "2"},
    )
    with serving(stack):
        yield stack


def _states(client: SyncPrefectClient, run_id: UUID) -> list[Any]:
    return sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)


def test_deployed_flow_runs_end_to_end_with_artifacts(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    run = wait(
        client, start(client, "synthetic-daily", parameters={"source_options": {"rows": 30000}}).id
    )
    assert run.state is not None and run.state.type == StateType.COMPLETED, run.state
    found = artifacts(client, run.id)
    for step in ("extract", "normalize", "load"):
        assert f"synthetic-{step}-progress" in found and f"synthetic-{step}-summary" in found
        assert found[f"synthetic-{step}-progress"][-1].data == 100
        progress = found[f"synthetic-{step}-progress"][-1].description
        assert not re.search(r"\d{10}\.\d+", progress), progress  # no raw load ids
    assert found["synthetic-extract-summary"][-1].description.startswith(
        "synthetic extract: 30,000 rows"
    )
    assert "| events | 30,000 |" in found["synthetic-load-summary"][-1].data
    report = found["synthetic-report"][-1]
    assert "| events | 30,000 |" in report.data and "| events__tags | 60,000 |" in report.data
    assert report.description.endswith("30,000 rows (+60,000 in nested tables)")
    assert "schema-changes" in " ".join(found)  # the first load creates tables
    assert synthetic_counts(warehouse(stack.root / "home", "synthetic"))["events"] == 30000


def test_schema_change_artifact_after_a_column_is_added(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    dsn = stack.postgres.dsn("shop")
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute(
            "CREATE TABLE products (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL)"
        )
        cur.execute(
            "INSERT INTO products SELECT i, 'p' || i, '2024-01-01'::timestamptz + "
            "i * interval '1 hour' FROM generate_series(1, 200) i"
        )
    first = wait(client, start(client, "products-daily").id)
    assert first.state is not None and first.state.type == StateType.COMPLETED
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute("ALTER TABLE products ADD COLUMN color text")
        cur.execute("UPDATE products SET color = 'red', updated_at = now() WHERE id <= 3")
    second = wait(client, start(client, "products-daily").id)
    assert second.state is not None and second.state.type == StateType.COMPLETED
    changes = artifacts(client, second.id)["products-schema-changes"]
    assert len(changes) == 1
    assert "| products | color | new column | - | text |" in changes[0].data
    assert "| products | 3 |" in artifacts(client, second.id)["products-report"][-1].data


def test_limit_one_deployment_never_runs_twice_at_once(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**stack.seaweed.storage_options(), skip_instance_cache=True)
    fs.pipe_file(f"{BUCKET}/landing/a.csv", b"id,v\n1,a\n2,b\n")
    runs = [start(client, "files-weekly").id for _ in range(3)]
    seen_running = 0
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        states = [client.read_flow_run(r).state for r in runs]
        running = sum(1 for s in states if s is not None and s.type == StateType.RUNNING)
        assert running <= 1, states
        seen_running = max(seen_running, running)
        if all(s is not None and s.type in TERMINAL for s in states):
            break
        time.sleep(0.25)
    final = [client.read_flow_run(r).state for r in runs]
    assert all(s is not None and s.type == StateType.COMPLETED for s in final), final
    assert seen_running == 1


def test_run_killed_during_load_is_retried_and_resumes_exactly(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    rows = 150_000  # 30,000 loaded by the first test: 120,000 new ones
    scratch = tmp_path / "pod-tmp"  # the attempts' working dirs
    scratch.mkdir()
    run = synthetic_killed_in_load(client, rows, TMPDIR=str(scratch))
    # the killed attempt's packages are not left on the pod's disk, nor the rerun's
    assert list(scratch.glob("flows-synthetic-*")) == []
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert [t.run_count for t in tasks] == [2]
    found = artifacts(client, run.id)
    assert "killed by signal 9" in found["synthetic-errors"][0].description
    report = found["synthetic-report"][-1].data
    assert "| **task attempt** | 2 |" in report
    assert "| **rows extracted (this attempt)** | 0 |" in report
    assert "1 pending package finished: 1 normalized (loaded now)" in report
    counts = synthetic_counts(warehouse(stack.root / "home", "synthetic"))
    assert {k: counts[k] for k in exact(rows)} == exact(rows)
    assert counts["loads"] == counts["distinct_loads"]


def test_crashed_run_is_rerun_by_the_automation_and_resumes_exactly(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    rows = 210_000  # 150,000 loaded by the tests above: 60,000 new ones
    run = start(
        client,
        "synthetic-daily",
        parameters={"source_options": {"rows": rows}},
        job_variables={
            "env": {
                "DATA_WRITER__FILE_MAX_ITEMS": "2000",
                "LOAD__WORKERS": "1",
                "FLOWS_CRASH_RERUN_BACKOFF": "1",
            }
        },
    )
    wait_for_artifact(client, run.id, "synthetic-load-progress")
    # the whole flow run at once, as when its pod is OOM-killed or its node is lost
    processes = flow_run_processes(run.id)
    assert len(processes) >= 2, processes
    for proc in processes:
        proc.send_signal(signal.SIGKILL)
    states: list[Any] = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        states = _states(client, run.id)
        if states[-1].type in (StateType.COMPLETED, StateType.FAILED):
            break
        time.sleep(0.5)
    kinds = [s.type for s in states]
    assert StateType.CRASHED in kinds, kinds
    crashed = kinds.index(StateType.CRASHED)
    assert StateType.SCHEDULED in kinds[crashed:], kinds  # the automation's rerun
    assert kinds[-1] == StateType.COMPLETED, states[-1]
    # at most one rerun per crash report: Prefect's process worker may report the kill twice
    # (its runner at once, the worker when it sees the process's exit code); a report that
    # lands after the first rerun started makes a second one, which the lease keeps apart
    crashes = kinds.count(StateType.CRASHED)
    assert 1 <= crashes <= 2, kinds
    assert 2 <= client.read_flow_run(run.id).run_count <= 1 + crashes
    counts = synthetic_counts(warehouse(stack.root / "home", "synthetic"))
    assert {k: counts[k] for k in exact(rows)} == exact(rows)
    assert counts["loads"] == counts["distinct_loads"]
    report = artifacts(client, run.id)["synthetic-report"][-1].data
    assert "| **rows extracted (this attempt)** | 0 |" in report  # it resumed


@pytest.mark.parametrize(
    ("job_variables", "named"),
    [
        ({"cpu_request": "abc"}, "cpu_request"),
        ({"memory_limit": "-1Gi"}, "memory_limit"),
        ({"cpu_limit": 2}, "cpu_limit"),
        ({"gpu": "1"}, "'gpu' was unexpected"),
    ],
)
def test_invalid_job_variables_are_refused_up_front(
    stack: LocalStack, client: SyncPrefectClient, job_variables: dict[str, Any], named: str
) -> None:
    dep = client.read_deployment_by_name("synthetic-daily/synthetic-daily")
    before = len(client.read_flow_runs())
    with pytest.raises(Exception, match="422") as refused:
        client.create_flow_run_from_deployment(dep.id, job_variables=job_variables)
    assert named in str(refused.value)
    with pytest.raises(Exception, match="422") as refused:
        client.create_deployment(
            flow_id=dep.flow_id,
            name="bad-resources",
            work_pool_name=stack.pool,
            job_variables=job_variables,
        )
    assert named in str(refused.value)
    assert len(client.read_flow_runs()) == before
    with pytest.raises(ObjectNotFound):
        client.read_deployment_by_name("synthetic-daily/bad-resources")


def test_failed_run_of_a_dlt_deployment_fires_the_alert(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    Hooks.received.clear()
    run = wait(
        client,
        start(
            client, "backfill", parameters={"start_date": "2024-02-10", "end_date": "2024-02-01"}
        ).id,
    )
    assert run.state is not None and run.state.type == StateType.FAILED
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not Hooks.received:
        time.sleep(0.5)
    assert Hooks.received, "no alert reached the webhook"
    assert Hooks.received[0]["flow_run_id"] == str(run.id)
    assert Hooks.received[0]["state"] == "Failed"


def test_backfill_loads_each_day_once(stack: LocalStack, client: SyncPrefectClient) -> None:
    params = {
        "start_date": "2024-01-01",
        "end_date": "2024-03-31",
        "chunk_days": 31,
        "rows_per_day": 10,
    }
    for _ in range(2):  # a second backfill of the same range changes nothing
        run = wait(client, start(client, "backfill", parameters=params).id)
        assert run.state is not None and run.state.type == StateType.COMPLETED, run.state
    with duck(warehouse(stack.root / "home", "daily_events")) as con:
        assert con.sql(
            "SELECT COUNT(*), COUNT(DISTINCT day) FROM daily.daily_events"
        ).fetchall() == [(910, 91)]


def test_terminal_error_is_not_retried(stack: LocalStack, client: SyncPrefectClient) -> None:
    run = wait(
        client,
        start(
            client, "synthetic-daily", parameters={"source_options": {"rows": "not-a-number"}}
        ).id,
    )
    assert run.state is not None and run.state.type == StateType.FAILED
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert [t.run_count for t in tasks] == [1]
    errors = artifacts(client, run.id)["synthetic-errors"]
    assert (
        len(errors) == 1
        and "not-a-number" in errors[0].data
        and "TerminalValueError" in errors[0].data
    )


def _doctor(stack: LocalStack, *args: str, **env: str) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "flows", "doctor", *args],
        env={**os.environ, **stack.run_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    return result.returncode, result.stdout


def test_doctor_passes_against_the_local_stack(stack: LocalStack) -> None:
    code, out = _doctor(stack)
    assert code == 0, out
    assert out.count("[ok  ]") == 8 and "8 of 8 checks passed" in out
    assert "[ok  ] pipelines: " in out


def test_doctor_finds_a_deployment_named_apart_from_its_flow_and_needs_no_version(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """A deployment is `FLOW/DEPLOYMENT` (here synthetic-daily/nightly): doctor finds it by
    its name and entrypoint; one without `version` in prefect.yaml is not compared."""
    synthetic = client.read_deployment_by_name("synthetic-daily/synthetic-daily")
    client.create_deployment(
        flow_id=synthetic.flow_id,
        name="nightly",
        entrypoint=synthetic.entrypoint,
        work_pool_name=stack.pool,
    )
    declared = tmp_path / "prefect.yaml"
    declared.write_text(
        json.dumps({"deployments": [{"name": "nightly", "entrypoint": synthetic.entrypoint}]})
    )
    code, out = _doctor(stack, "--prefect-yaml", str(declared))
    assert code == 0, out
    assert "[ok  ] deployments: 1 registered with their schedules" in out, out
    assert "[ok  ] flows version: no deployment of prefect.yaml records a version" in out, out


def test_doctor_checks_declared_pipelines_and_uses_the_flow_runs_state_store(
    stack: LocalStack,
) -> None:
    """As in a worker pod: no STATE__URL of its own, so the pool's flow-run store is checked;
    a declaration whose source does not import fails the pipelines check, naming it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in {**os.environ, **stack.run_env()}.items() if k != "STATE__URL"}
    result = subprocess.run(
        [sys.executable, "-m", "flows", "doctor"],
        env={**env, "PIPELINES__BROKEN__SOURCE": "no_such_module:src"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    storage = next(x for x in lines if x.startswith("[ok  ] state store:"))
    assert f"s3://{BUCKET}/state is writable (the flow runs' store, pool 'dlt-local')" in storage
    failed = [x for x in lines if x.startswith("[FAIL]")]
    assert len(failed) == 1 and failed[0].startswith("[FAIL] pipelines: broken: "), lines
    assert "SourceImportError" in failed[0] and "no_such_module" in failed[0]


@pytest.mark.parametrize(
    ("args", "env", "failing", "says"),
    [
        ([], {"PREFECT_API_URL": "http://127.0.0.1:9/api"}, "Prefect API", "unreachable"),
        ([], {"PREFECT_API_AUTH_STRING": "admin:wrong"}, "Prefect API", "auth string rejected"),
        (["--pool", "no-such-pool"], {}, "work pool", "'no-such-pool' does not exist"),
        (["--state-url", "s3://no-such-bucket/state"], {}, "state store", "no-such-bucket"),
    ],
)
def test_doctor_names_the_cause(
    stack: LocalStack, args: list[str], env: dict[str, str], failing: str, says: str
) -> None:
    code, out = _doctor(stack, *args, **env)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert failed[0].startswith(f"[FAIL] {failing}:") and says in failed[0], out
    assert "fix:" in out


def _flows(stack: LocalStack, *args: str, **env: str) -> Any:
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        env={**os.environ, **stack.run_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )


def test_tune_recommends_from_recorded_runs_and_applies(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    from flows.prefect.records import read_records
    from flows.system.quantities import memory_bytes

    # four records make the same recommendation path as ten (tune reads any number): the
    # runs go one after another (limit 1), and each costs a flow-run process
    runs = [start(client, "files-weekly").id for _ in range(4)]
    for run_id in runs:
        final = wait(client, run_id, timeout=600)
        assert final.state is not None and final.state.type == StateType.COMPLETED
    records = read_records(client, "files-weekly", 4)  # the newest: other tests ran it too
    assert len(records) == 4 and {r.flow_run_id for r in records} == {str(r) for r in runs}
    assert all(r.peak_rss_bytes > 10 * 2**20 and r.cpu_seconds > 0 for r in records)

    shown = _flows(stack, "tune", "files-weekly", "--runs", "4")
    assert shown.returncode == 0, shown.stderr
    limit = shown.stdout.split("memory_limit")[1].split()[1]  # current, then recommended
    assert all(r.peak_rss_bytes < memory_bytes(limit) for r in records)
    assert "4 run records" in shown.stdout

    applied = _flows(stack, "tune", "files-weekly", "--runs", "4", "--apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "memory_limit: 1Gi -> " in applied.stdout
    job_variables = client.read_deployment_by_name("files-weekly/files-weekly").job_variables
    assert job_variables["memory_limit"] == limit
    assert job_variables["image"] == ""  # other variables kept


def test_example_projects_deployment_loads_resumes_after_kill_and_merges_changes(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    """examples/shop_project's own prefect.yaml on the stack: exactly the server's items; a
    kill -9 during load is retried and resumes without extracting again; changed items are
    merged."""
    import os
    import subprocess
    import sys

    from tests.integration.shop_api import ShopApi
    from tests.integration.test_examples import PROJECT, items_in

    shop = ShopApi(items=20_000).start()
    try:
        deployed = subprocess.run(
            [sys.executable, "-m", "flows", "deploy", "--project-dir", str(PROJECT)],
            cwd=PROJECT,
            env={**os.environ, **stack.run_env(), "FLOWS_PROJECT_DIR": str(PROJECT)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        deployment = client.read_deployment_by_name("shop-daily/shop-daily")
        env = {
            "SOURCES__SHOP_API__BASE_URL": shop.url,
            "SOURCES__SHOP_API__PAGE_SIZE": "1000",
            "DATA_WRITER__FILE_MAX_ITEMS": "500",
            "LOAD__WORKERS": "1",
        }
        run = client.create_flow_run_from_deployment(deployment.id, job_variables={"env": env})
        kill_attempt_at(client, run.id, "shop-items-load-progress")
        served = shop.requests["/items"]
        final = wait(client, run.id, timeout=400)
        assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
        found = artifacts(client, run.id)
        report = found["shop-items-report"][-1].data
        assert "| **task attempt** | 2 |" in report, report
        assert "| **rows extracted (this attempt)** | 0 |" in report, report
        # the retry of the same run finishes the killed attempt's package and does not
        # extract again: the source is not asked for a single page
        assert shop.requests["/items"] - served == 0
        shop_items = warehouse(stack.root / "home", "shop_items")
        assert items_in(shop_items) == shop.rows()

        shop.touch([5, 500, 19_999])
        again = client.create_flow_run_from_deployment(deployment.id, job_variables={"env": env})
        final = wait(client, again.id, timeout=400)
        assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
        report = artifacts(client, again.id)["shop-items-report"][-1]
        assert report.description == "shop_items: completed, 3 rows", report.description
        assert items_in(shop_items) == shop.rows()
    finally:
        shop.stop()


def test_stack_env_from_another_directory_finds_the_running_stack(
    stack: LocalStack, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from devstack.stack import remember

    state = tmp_path / "state"
    os.environ["XDG_STATE_HOME"] = str(state)  # the note `flows stack up` writes
    try:
        remember(stack.root)
    finally:
        del os.environ["XDG_STATE_HOME"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWS_", "PREFECT_API"))}
    result = subprocess.run(
        [sys.executable, "-m", "flows", "stack", "env"],
        cwd=elsewhere,
        env={**env, "XDG_STATE_HOME": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"export PREFECT_API_AUTH_STRING={stack.auth_string!r}" in result.stdout
    assert f"export PREFECT_API_URL={stack.api_url!r}" in result.stdout
    assert list(elsewhere.iterdir()) == []


def test_tune_bad_input(stack: LocalStack) -> None:
    # bad input (ConfigError): exit 2, one line, never retried
    unknown = _flows(stack, "tune", "no-such-deployment")
    assert unknown.returncode == 2
    assert "no deployment and no run records named 'no-such-deployment'" in unknown.stderr
    never_ran = _flows(stack, "tune", "products-full-refresh")
    assert never_ran.returncode == 2
    assert "no run records for 'products-full-refresh' yet" in never_ran.stderr


@contextmanager
def _schedule_paused(client: SyncPrefectClient, deployment: str) -> Iterator[None]:
    """The deployment's schedule off (its scheduled runs deleted) and no run of it in flight."""
    dep = client.read_deployment_by_name(f"{deployment}/{deployment}")
    client.pause_deployment(dep.id)
    try:
        in_flight = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
        )
        for run in in_flight:
            if run.state_type not in TERMINAL | {StateType.SCHEDULED}:
                wait(client, run.id)
        yield
    finally:
        client.resume_deployment(dep.id)


def test_history_pipeline_loads_only_new_runs(stack: LocalStack, client: SyncPrefectClient) -> None:
    """Each history run loads exactly the flow runs finished since the one before it. The
    hourly `platform-history` schedule writes the same pipeline, so it is paused meanwhile; a
    scheduled run before the test may already have loaded some runs."""
    history_db = warehouse(stack.root / "home", "prefect_history")

    def history() -> dict[str, Any]:
        result = _flows(stack, "run", "prefect_history", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        return dict(json.loads(result.stdout))

    def loaded_ids() -> set[str]:
        if not history_db.exists():
            return set()
        with duck(history_db) as con:
            ids = con.sql("SELECT id FROM platform.prefect_flow_runs").fetchall()
        assert len(ids) == len(set(ids))
        return {i for (i,) in ids}

    with _schedule_paused(client, "platform-history"):

        def finished() -> set[str]:
            return {str(r.id) for r in client.read_flow_runs(limit=200) if r.end_time is not None}

        def daily() -> FlowRun:
            rows = {"source_options": {"rows": 1000}}
            return wait(client, start(client, "synthetic-daily", parameters=rows).id)

        before = loaded_ids()
        if not finished() - before:  # the test runs alone
            daily()
        done = finished()
        first = history()
        assert first["loaded_rows"]["prefect_flow_runs"] == len(done - before)
        assert first["loaded_rows"]["prefect_task_runs"] > 0
        assert first["loaded_rows"]["prefect_artifacts"] > 0
        assert loaded_ids() == done | before
        second = history()
        assert second["extracted_rows"].get("prefect_flow_runs", 0) == 0
        run = daily()
        third = history()
        assert third["extracted_rows"]["prefect_flow_runs"] == 1
        assert loaded_ids() == done | before | {str(run.id)}
        with duck(history_db) as con:
            records = con.sql(
                "SELECT COUNT(*) FROM platform.prefect_artifacts WHERE "
                f"key LIKE 'run-record-%' AND flow_run_id = '{run.id}'"
            ).fetchall()
        assert records == [(1,)]


HANGING_FLOW = """
import time

from prefect import flow


@flow
def hang() -> None:
    time.sleep(600)
"""


def test_a_running_flow_run_whose_pod_vanished_is_crashed_and_rerun(
    stack: LocalStack, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """A node lost with the worker that would see its pod end: the run's heartbeats stop, the
    unresponsive-run automation marks it Crashed, the crash automation schedules it again. A
    run that keeps beating is left alone."""
    (tmp_path / "hang.py").write_text(HANGING_FLOW)
    pool = "no-worker"  # nothing polls it: the rerun stays scheduled
    client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment = client.create_deployment(
        flow_id=client.create_flow_from_name("hang"),
        name="hang",
        entrypoint="hang.py:hang",
        work_pool_name=pool,
        tags=["dlt"],
        pull_steps=[
            {"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}
        ],
    )
    silent, beating = (client.create_flow_run_from_deployment(deployment) for _ in range(2))
    silence = 45  # heartbeats every 30 s: a live run is never silent this long
    apply_unresponsive_crash(client, silence)
    pods: dict[UUID, subprocess.Popen[bytes]] = {}
    try:
        for run in (silent, beating):
            env = {
                **os.environ,
                "PREFECT_API_URL": stack.api_url,
                "PREFECT_API_AUTH_STRING": stack.auth_string,
                "PREFECT__FLOW_RUN_ID": str(run.id),
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
                "FLOWS_PREWARM_ATTEMPT": "0",
            }
            pods[run.id] = subprocess.Popen(
                [sys.executable, "-m", "flows.prefect.pod"], env=env, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while not all(_states(client, r.id)[-1].is_running() for r in (silent, beating)):
            assert time.monotonic() < deadline, "the flow runs did not start"
            time.sleep(0.5)
        time.sleep(3)  # the first heartbeat goes out as the flow begins
        os.killpg(pods[silent.id].pid, signal.SIGKILL)  # the pod and its node, gone
        pods[silent.id].wait()
        killed = time.monotonic()
        while StateType.SCHEDULED not in [s.type for s in _states(client, silent.id)[1:]]:
            assert time.monotonic() < killed + silence + 90, _states(client, silent.id)
            time.sleep(1)
        states = _states(client, silent.id)
        kinds = [s.type for s in states]
        assert kinds[-3:] == [StateType.RUNNING, StateType.CRASHED, StateType.SCHEDULED], kinds
        crashed = states[-2]
        assert f"no heartbeat for {silence} s" in (crashed.message or ""), crashed
        assert time.monotonic() - killed >= silence - 5  # not before the silence
        assert pods[beating.id].poll() is None
        assert _states(client, beating.id)[-1].is_running(), "a live run was crashed"
    finally:
        apply_unresponsive_crash(client, UNRESPONSIVE_AFTER_SECONDS)
        for run_id, pod in pods.items():
            if pod.poll() is None:
                os.killpg(pod.pid, signal.SIGKILL)
                pod.wait()
            client.set_flow_run_state(run_id, Cancelled(), force=True)
