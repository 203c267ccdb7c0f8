"""The HA Prefect server on real processes: two API servers (`--no-services`) and one
services process on one PostgreSQL and one Redis (prefect-redis for messaging, cache,
event ordering and concurrency leases), as the chart runs them with `server.ha.enabled`.

A deployment is created through API server A; the services process schedules its run; a
process worker polling API server B picks it up; the flow writes an artifact through B
that is read through A; A is killed while the run is still going, and the run completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.ports import free_port
from devstack.postgres import Postgres
from tests.integration.helpers import stop

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ha-server")]

BIN = Path(sys.executable).parent
POOL = "ha-pool"
ARTIFACT_KEY = "ha-artifact"
FLOW = """
import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact


@flow(log_prints=True)
def ha_flow() -> str:
    create_markdown_artifact(key="ha-artifact", markdown="written through server B")
    time.sleep(25)  # server A is killed meanwhile
    return "done"
"""


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if not found:
        pytest.fail("redis-server not found: run scripts/install-services.sh", pytrace=False)
    return found


@dataclass
class Processes:
    root: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self.running[name] = proc
        return proc

    def log(self, name: str) -> str:
        text = (self.root / f"{name}.log").read_text(errors="replace")
        return "\n".join(line for line in text.splitlines() if "event_persister" not in line)[
            -6000:
        ]

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.running):
            stop(self.running.pop(name))


def _wait(what: str, check: Any, timeout: float, logs: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as err:
            last = err
        else:
            if last:
                return last
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})\n{logs}")


@pytest.fixture
def ha(tmp_path: Path, postgres: Postgres) -> Iterator[tuple[Processes, dict[str, str], str, str]]:
    procs = Processes(tmp_path)
    redis_port = free_port(avoid_plus=None)
    procs.spawn(
        "redis",
        [
            _redis_server(),
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        dict(os.environ),
    )
    database = f"prefect_ha_{os.getpid()}"
    postgres.create_database(database)
    url = postgres.dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": f"redis://127.0.0.1:{redis_port}/0",
        # background tasks the API servers enqueue run in the services process
        "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:{redis_port}/1",
        "PREFECT_LOGGING_SERVER_LEVEL": "DEBUG",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    try:
        # migrations and block types once, before any API server starts (the chart's
        # pre-install/pre-upgrade Job); two replicas doing it at start race and one dies
        migrated = subprocess.run(
            [str(BIN / "flows"), "server-migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
        apis = []
        for name in ("api-a", "api-b"):
            port = free_port(avoid_plus=None)
            procs.spawn(
                name,
                [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--no-services",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env,
            )
            apis.append(f"http://127.0.0.1:{port}/api")
        procs.spawn("services", [str(BIN / "prefect"), "server", "services", "start"], env)
        for name, api in zip(("api-a", "api-b"), apis, strict=True):
            _wait(
                f"{name} ready",
                lambda a=api: httpx.get(f"{a}/ready", timeout=5).status_code == 200,
                180,
                procs.log(name),
            )
        yield procs, env, apis[0], apis[1]
    finally:
        procs.stop_all()


def test_two_api_servers_one_services_process(
    ha: tuple[Processes, dict[str, str], str, str], tmp_path: Path
) -> None:
    procs, env, api_a, api_b = ha
    project = tmp_path / "project"
    project.mkdir()
    (project / "ha_flow.py").write_text(textwrap.dedent(FLOW))

    # through A: the pool and a deployment with a schedule (no run is created by hand)
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    with SyncPrefectClient(api_a) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        flow_id = client.create_flow_from_name("ha-flow")
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name="ha-deployment",
            work_pool_name=POOL,
            entrypoint="ha_flow.py:ha_flow",
            path=str(project),
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}
            ],
            schedules=[
                DeploymentScheduleCreate(
                    # the first run is due in 15 s, then hourly
                    schedule=IntervalSchedule(
                        interval=timedelta(hours=1),
                        anchor_date=datetime.now(UTC) + timedelta(seconds=15),
                    ),
                    active=True,
                )
            ],
        )

    # the services process (the scheduler) creates the scheduled run; nobody else could
    def scheduled() -> list[dict[str, Any]]:
        body = {"deployments": {"id": {"any_": [str(deployment_id)]}}}
        runs: list[dict[str, Any]] = httpx.post(
            f"{api_b}/flow_runs/filter", json=body, timeout=10
        ).json()
        return runs

    runs = _wait("scheduled run", scheduled, 120, procs.log("services"))
    run_id = sorted(runs, key=lambda r: r["expected_start_time"])[0]["id"]

    # a worker polling B picks it up
    worker_env = {
        **env,
        "PREFECT_API_URL": api_b,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "10",
    }
    procs.spawn(
        "worker",
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
        worker_env,
    )

    def state(api: str) -> str:
        return str(httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state_type"])

    _wait("run running", lambda: state(api_b) == "RUNNING", 180, procs.log("worker"))

    # the artifact written through B is read through A
    def artifact_via_a() -> list[dict[str, Any]]:
        body = {"artifacts": {"key": {"any_": [ARTIFACT_KEY]}}}
        found: list[dict[str, Any]] = httpx.post(
            f"{api_a}/artifacts/filter", json=body, timeout=10
        ).json()
        return found

    artifacts = _wait("artifact via A", artifact_via_a, 60, procs.log("worker"))
    assert artifacts[0]["flow_run_id"] == run_id
    assert artifacts[0]["data"] == "written through server B"

    # A dies while the run goes on; the run completes through B
    procs.kill("api-a")
    assert state(api_b) == "RUNNING"
    final = _wait(
        "run final",
        lambda: (s := state(api_b)) in ("COMPLETED", "FAILED", "CRASHED") and s,
        180,
        procs.log("worker"),
    )
    assert final == "COMPLETED", procs.log("worker")
