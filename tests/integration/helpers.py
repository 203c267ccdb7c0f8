"""Helpers shared by the integration and image tests: a local stack as Prefect's API, run
the CLI in a subprocess, read DuckDB, read a flow run's artifacts, race two lease holders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import LogSort
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from devstack.stack import LocalStack
from flows.state import LeaseHeldError, StateStore
from flows.state.lease import Lease

KILLER = Path(__file__).with_name("killer.py")
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


@contextmanager
def prefect_settings(stack: LocalStack) -> Iterator[None]:
    """Prefect clients made inside talk to the stack's server, with its auth string."""
    with temporary_settings(
        {PREFECT_API_URL: stack.api_url, PREFECT_API_AUTH_STRING: stack.auth_string}
    ):
        yield


@contextmanager
def serving(stack: LocalStack, **up: bool) -> Iterator[LocalStack]:
    """The stack started (`up` as `LocalStack.up` takes it) and Prefect's API for the
    block; stopped after it, however it ended."""
    try:
        stack.up(**up)
        with prefect_settings(stack):
            yield stack
    finally:
        stack.down()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def run_args(state: str, pod: Path, *more: str) -> list[str]:
    """`flows run synthetic` with its state at `state` and `pod` as the pod's local disk."""
    return ["run", "synthetic", "--state-url", state, "--pipelines-dir", str(pod), *more]


def run_cli(
    args: list[str], env: dict[str, str], kill_at: str | None = None, timeout: float = 300
) -> Result:
    """Runs `flows ARGS` (or the killer harness) in a new process with `env` on top of ours."""
    cmd = (
        [sys.executable, str(KILLER), kill_at, *args]
        if kill_at
        else [sys.executable, "-m", "flows", *args]
    )
    proc = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """Ends a server process: SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def duck(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)


def warehouse(home: Path, pipeline: str) -> Path:
    """The DuckDB file a pipeline loads into by default: under `$FLOWS_HOME/warehouse`."""
    return home / "warehouse" / f"flows_{pipeline}.duckdb"


def _counts(one: Callable[[str], int], dataset: str) -> dict[str, int]:
    """The figures that prove exactly-once for the synthetic source, from any SQL client."""
    return {
        "events": one(f"SELECT COUNT(*) FROM {dataset}.events"),
        "distinct_ids": one(f"SELECT COUNT(DISTINCT id) FROM {dataset}.events"),
        "max_id": one(f"SELECT COALESCE(MAX(id), 0) FROM {dataset}.events"),
        "tags": one(f"SELECT COUNT(*) FROM {dataset}.events__tags"),
        "orphan_tags": one(
            f"SELECT COUNT(*) FROM {dataset}.events__tags t WHERE NOT EXISTS "
            f"(SELECT 1 FROM {dataset}.events e WHERE e._dlt_id = t._dlt_root_id)"
        ),
        "loads": one(f"SELECT COUNT(*) FROM {dataset}._dlt_loads"),
        "distinct_loads": one(f"SELECT COUNT(DISTINCT load_id) FROM {dataset}._dlt_loads"),
    }


def synthetic_counts(path: Path, dataset: str = "synthetic") -> dict[str, int]:
    """Exactly-once figures of a DuckDB file."""
    with duck(path) as con:
        return _counts(lambda sql: int(con.sql(sql).fetchall()[0][0]), dataset)


def pg_counts(dsn: str, dataset: str = "synthetic") -> dict[str, int]:
    """Exactly-once figures of a PostgreSQL database."""
    import psycopg2

    with psycopg2.connect(dsn) as con, con.cursor() as cur:

        def one(sql: str) -> int:
            cur.execute(sql)
            row = cur.fetchone()
            assert row is not None
            return int(row[0])

        return _counts(one, dataset)


def bucket_listing(s3: Any, bucket: str) -> dict[str, tuple[int, str]]:
    """Every object with its size and ETag: equal listings mean an untouched bucket."""
    s3.invalidate_cache()
    return {
        path: (info["size"], info.get("ETag", ""))
        for path, info in s3.find(bucket, detail=True).items()
    }


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a process on the embedded default: no API configured, its own homes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "FLOWS_HOME": str(tmp_path / "home"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }
    )
    return env


def exact(rows: int) -> dict[str, int]:
    return {
        "events": rows,
        "distinct_ids": rows,
        "max_id": rows,
        "tags": 2 * rows,
        "orphan_tags": 0,
    }


def artifacts(client: SyncPrefectClient, run_id: UUID) -> dict[str, list[Any]]:
    """A flow run's artifacts by key, oldest first."""
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    )
    by_key: dict[str, list[Any]] = {}
    for artifact in sorted(found, key=lambda a: a.created):
        by_key.setdefault(artifact.key, []).append(artifact)
    return by_key


def start(client: SyncPrefectClient, deployment: str, **kwargs: Any) -> FlowRun:
    """A new flow run of `deployment` (prefect.yaml names each deployment after its flow)."""
    dep = client.read_deployment_by_name(f"{deployment}/{deployment}")
    return client.create_flow_run_from_deployment(dep.id, **kwargs)


def wait(client: SyncPrefectClient, run_id: UUID, timeout: float = 300) -> FlowRun:
    """The flow run once it is in a terminal state. A server error (5xx) while it is read is
    retried: a loaded server answers 500 now and then; any other error is raised."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = client.read_flow_run(run_id)
        except PrefectHTTPStatusError as err:
            if err.response.status_code < 500:
                raise
            time.sleep(2)
            continue
        if run.state and run.state.type in TERMINAL:
            return run
        time.sleep(0.5)
    try:
        story = _story(client, run_id)
    except Exception as err:  # the timeout is the failure to report, not this
        story = f"(its history could not be read: {type(err).__name__}: {err})"
    raise TimeoutError(f"flow run {run_id} not finished after {timeout} s\n{story}")


def _story(client: SyncPrefectClient, run_id: UUID) -> str:
    """What a flow run went through, for a test that timed out waiting for it: its states and
    its last log lines, as the server recorded them."""
    states = sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)
    logs = client.read_logs(
        LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
        limit=40,
        sort=LogSort.TIMESTAMP_DESC,
    )
    lines = [f"state {s.timestamp:%H:%M:%S} {s.name}: {s.message or ''}" for s in states]
    lines += [f"log {log.timestamp:%H:%M:%S} {log.message[:300]}" for log in reversed(logs)]
    return "\n".join(lines)


def wait_for_artifact(client: SyncPrefectClient, run_id: UUID, artifact: str) -> None:
    """Returns once the flow run wrote `artifact` (a step's progress: the run is in that step)."""
    deadline = time.monotonic() + 300
    while artifact not in artifacts(client, run_id):
        assert time.monotonic() < deadline, f"the run never wrote {artifact}"
        time.sleep(0.05)


def kill_attempt_at(client: SyncPrefectClient, run_id: UUID, artifact: str) -> int:
    """SIGKILLs the flow run's one attempt process as soon as `artifact` exists (the kill
    lands in that step); its pid."""
    wait_for_artifact(client, run_id, artifact)
    children = flow_run_processes(run_id, "flows-attempt")
    assert len(children) == 1, children
    children[0].send_signal(signal.SIGKILL)
    return children[0].pid


def synthetic_killed_in_load(client: SyncPrefectClient, rows: int, **env: str) -> FlowRun:
    """A synthetic-daily run whose attempt is SIGKILLed during load (small load files, one
    load worker: the kill lands in the load), once its retry completed it."""
    run = start(
        client,
        "synthetic-daily",
        parameters={"source_options": {"rows": rows}},
        job_variables={"env": {"DATA_WRITER__FILE_MAX_ITEMS": "2000", "LOAD__WORKERS": "1", **env}},
    )
    kill_attempt_at(client, run.id, "synthetic-load-progress")
    final = wait(client, run.id, timeout=400)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
    return final


def flow_run_processes(flow_run_id: UUID | str, name: str | None = None) -> list[psutil.Process]:
    """The processes of one flow run (other tests run flows on the same machine): the engine
    the worker started and its attempt child (`flows-attempt`, flows/attempt/child.py), or
    only those named `name`."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if name is not None and proc.info.get("name") != name:
            continue
        try:
            if proc.environ().get("PREFECT__FLOW_RUN_ID") == str(flow_run_id):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_late_writer_cannot_clobber(store: StateStore, path: str) -> None:
    """Stages the race two runs once hit on SeaweedFS: A reads a free lease, B takes it,
    then A's write lands. A must be refused and B must still hold the lease."""
    late, holder = Lease(store, path, settle=0), Lease(store, path, settle=0)
    before = late._read_versioned()  # A reads: nobody holds it
    holder.acquire()  # B takes it meanwhile
    reads = iter([before])  # A's write is based on what it read before B's
    real_read = late._read_versioned
    late._read_versioned = lambda: next(reads, None) or real_read()  # type: ignore[method-assign]
    try:
        with pytest.raises(LeaseHeldError, match="is locked by"):
            late.acquire()
        holder.verify()
        assert holder.read() == holder.info
    finally:
        holder.release()


class Destination:
    """A fresh PostgreSQL database or DuckDB file for one test's runs, with the environment
    that points `flows run` at it and the exactly-once figures of what arrived."""

    def __init__(self, kind: str, tmp_path: Path, postgres: Any = None) -> None:
        self.kind = kind
        if kind == "postgres":
            assert postgres is not None
            database = f"d{os.urandom(4).hex()}"
            postgres.create_database(database)
            self.dsn = postgres.dsn(database)
            self.env = {
                "PIPELINES__DESTINATION": "postgres",
                "DESTINATION__POSTGRES__CREDENTIALS": self.dsn,
            }
        else:
            self.path = tmp_path / "warehouse.duckdb"
            self.env = {"DESTINATION__DUCKDB__CREDENTIALS": str(self.path)}

    def counts(self) -> dict[str, int]:
        return pg_counts(self.dsn) if self.kind == "postgres" else synthetic_counts(self.path)

    def assert_exact(self, rows: int) -> dict[str, int]:
        counts = self.counts()
        assert {k: counts[k] for k in exact(rows)} == exact(rows), counts
        assert counts["loads"] == counts["distinct_loads"], counts
        return counts

    def one(self, sql: str) -> int:
        """The single number a query returns."""
        if self.kind == "postgres":
            import psycopg2

            with psycopg2.connect(self.dsn) as con, con.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
                assert row is not None
                return int(row[0])
        with duck(self.path) as con:
            return int(con.sql(sql).fetchall()[0][0])
