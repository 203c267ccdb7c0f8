"""Fencing against real SeaweedFS, PostgreSQL and DuckDB: overlapping attempts of one run,
a lease revoked by `flows state unlock`, a lease that lapses while the store is down, and
store outages shorter and longer than the retry window.

Attempt A runs under tests/integration/pauser.py, which announces a point of the load step
and holds the load loop there; the test then does its worst. Whatever it does, the
destination must end exact (N rows, N distinct ids, 2N nested rows, no orphans, no load id
twice) and a later run must exit 0 with nothing to repair.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devstack.postgres import Postgres
from devstack.seaweedfs import SeaweedFS
from tests.integration.helpers import Destination, run_args, run_cli

ROWS = 40_000
TTL = 12.0  # the holder renews every 1.5 s and fences itself 9 s after its last renewal
PAUSER = Path(__file__).with_name("pauser.py")


def env_for(flows_env: dict[str, str], destination: Destination, **extra: str) -> dict[str, str]:
    return {
        **flows_env,
        **destination.env,
        "SOURCES__SYNTHETIC__ROWS": str(ROWS),
        # many small files and two load workers: the load takes several rounds of jobs
        "DATA_WRITER__FILE_MAX_ITEMS": "4000",
        "LOAD__WORKERS": "2",
        "STATE__LEASE_TTL": str(TTL),
        "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
        **extra,
    }


def start_paused(
    point: str, seconds: float, args: list[str], env: dict[str, str], marker: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PAUSER), point, str(marker), str(seconds), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"attempt ended before the pause: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the paused attempt never reached its point"
        time.sleep(0.05)


def assert_nothing_to_repair(state: str, env: dict[str, str], pod: Path) -> None:
    later = run_cli(run_args(state, pod, "--json"), env)
    assert later.code == 0, later.stderr[-3000:]
    report = later.json()
    assert report["resume"]["normalized"] == [] and report["resume"]["extracted"] == []
    assert report["resume"]["rows_removed"] == {}
    assert report["extracted_rows"].get("events", 0) == 0


@pytest.fixture(params=["postgres", "duckdb"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    return Destination(request.param, tmp_path, postgres)


@pytest.mark.parametrize("point", ["load-start", "load-mid", "load-commit"])
def test_two_attempts_of_one_run_overlapping_during_load_stay_exact(
    point: str, destination: Destination, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    state = f"s3://{bucket}/state"
    env = env_for(flows_env, destination)
    marker = tmp_path / "paused"
    first = start_paused(
        point, 30, run_args(state, tmp_path / "pod-a", "--run-id", "R1"), env, marker
    )
    wait_for(marker, first)
    # the same flow run, rescheduled on another pod while the first still lives
    second = run_cli(run_args(state, tmp_path / "pod-b", "--run-id", "R1", "--json"), env)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 3, first_err[-3000:]  # fenced: revoked by its successor
    assert "fenced" in first_err or "revoked" in first_err, first_err[-3000:]
    assert second.code == 0, second.stderr[-3000:]
    assert "revoked" in second.stderr  # it said whom it waited for
    destination.assert_exact(ROWS)
    assert_nothing_to_repair(state, env, tmp_path / "pod-c")
    destination.assert_exact(ROWS)


def test_unlock_against_a_live_run_fences_it_and_the_next_run_is_exact(
    flows_env: dict[str, str], bucket: str, tmp_path: Path, postgres: Postgres
) -> None:
    destination = Destination("postgres", tmp_path, postgres)
    state = f"s3://{bucket}/state"
    env = env_for(flows_env, destination)
    marker = tmp_path / "paused"
    first = start_paused("load-mid", 30, run_args(state, tmp_path / "pod-a"), env, marker)
    wait_for(marker, first)
    unlock = run_cli(["state", "unlock", "synthetic", "--state-url", state, "--yes"], env)
    assert unlock.code == 0 and "revoked" in unlock.stdout, unlock.stderr
    shown = run_cli(["state", "show", "synthetic", "--state-url", state], env)
    assert "revoked by flows state unlock" in shown.stdout, shown.stdout
    # a new run (another run id) waits the revoked lease out instead of writing beside it
    second = run_cli(run_args(state, tmp_path / "pod-b", "--json"), env)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 3, first_err[-3000:]
    assert second.code == 0, second.stderr[-3000:]
    destination.assert_exact(ROWS)
    assert_nothing_to_repair(state, env, tmp_path / "pod-c")


# ---------- outages: a SeaweedFS of the test's own, stopped and restarted on its port ----------


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path / "seaweed-own")
    server.start()
    server.create_bucket("state")
    try:
        yield server
    finally:
        server.stop(timeout=1)


def outage(server: SeaweedFS, seconds: float) -> Callable[[], None]:
    """Stops the store now; the returned function restarts it after `seconds` in all."""
    began = time.monotonic()
    server.stop(timeout=1)

    def restart() -> None:
        time.sleep(max(0.0, seconds - (time.monotonic() - began) - 8))  # start takes ~8-10 s
        server.start()

    return restart


def store_env(flows_env: dict[str, str], server: SeaweedFS) -> dict[str, Any]:
    return {**flows_env, **server.env()}


def test_store_outage_shorter_than_the_window_only_delays_the_run(
    flows_env: dict[str, str], own_store: SeaweedFS, tmp_path: Path, postgres: Postgres
) -> None:
    destination = Destination("postgres", tmp_path, postgres)
    env = env_for(
        store_env(flows_env, own_store),
        destination,
        STATE__LEASE_TTL="120",
        STATE__RETRY_ATTEMPTS="0",  # no cap: the window alone decides
    )
    state = "s3://state/state"
    marker = tmp_path / "paused"
    run = start_paused("load-mid", 2, run_args(state, tmp_path / "pod-a", "--json"), env, marker)
    wait_for(marker, run)
    started = time.monotonic()
    outage(own_store, 20)()
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    assert time.monotonic() - started >= 10  # it did wait for the store
    destination.assert_exact(ROWS)
    assert_nothing_to_repair(state, {**env, **own_store.env()}, tmp_path / "pod-b")


def test_outage_longer_than_the_window_exits_5_and_a_rerun_resumes_exactly(
    flows_env: dict[str, str], own_store: SeaweedFS, tmp_path: Path, postgres: Postgres
) -> None:
    destination = Destination("postgres", tmp_path, postgres)
    env = env_for(store_env(flows_env, own_store), destination, STATE__RETRY_WINDOW="3")
    state = "s3://state/state"
    marker = tmp_path / "paused"
    run = start_paused(
        "load-mid", 2, run_args(state, tmp_path / "pod-a", "--run-id", "R2"), env, marker
    )
    wait_for(marker, run)
    restart = outage(own_store, 25)
    _, err = run.communicate(timeout=300)
    # the lease lapsed while the store was down: the holder fenced itself, retryable
    assert run.returncode == 5, err[-3000:]
    assert "unreachable" in err.strip().splitlines()[-1], err[-2000:]
    restart()
    rerun = run_cli(run_args(state, tmp_path / "pod-b", "--run-id", "R2", "--json"), env)
    assert rerun.code == 0, rerun.stderr[-3000:]
    assert rerun.json()["resume"]["normalized"], "the rerun resumed the pending package"
    assert rerun.json()["extracted_rows"].get("events", 0) == 0
    destination.assert_exact(ROWS)
    assert_nothing_to_repair(state, env, tmp_path / "pod-c")


def test_a_holder_frozen_inside_a_transaction_cannot_commit_after_the_takeover(
    flows_env: dict[str, str], bucket: str, tmp_path: Path, postgres: Postgres
) -> None:
    """SIGSTOP for longer than the lease, just before a load job's COMMIT: the successor takes
    over, terminates the frozen holder's backend (its transaction rolls back) and loads; the
    first, woken, commits nothing."""
    destination = Destination("postgres", tmp_path, postgres)
    state = f"s3://{bucket}/state"
    env = env_for(flows_env, destination)
    marker = tmp_path / "paused"
    first = start_paused(
        "freeze-commit", 0, run_args(state, tmp_path / "pod-a", "--run-id", "R1"), env, marker
    )
    wait_for(marker, first)
    deadline = time.monotonic() + 30
    while psutil.Process(first.pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the first attempt never froze"
        time.sleep(0.05)
    second = subprocess.Popen(
        [sys.executable, "-m", "flows", *run_args(state, tmp_path / "pod-b", "--run-id", "R1")],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, second_err = second.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        second_err = ""  # blocked by the frozen holder's transaction
    finished_while_frozen = second.poll() is not None
    os.kill(first.pid, signal.SIGCONT)
    _, first_err = first.communicate(timeout=120)
    if not finished_while_frozen:
        _, second_err = second.communicate(timeout=180)
    assert finished_while_frozen, f"the successor waited for the frozen holder: {second_err}"
    assert second.returncode == 0, second_err[-3000:]
    assert "terminated backend" in second_err, second_err[-3000:]
    assert first.returncode == 3, first_err[-3000:]  # woke fenced, committed nothing
    destination.assert_exact(ROWS)
    assert_nothing_to_repair(state, env, tmp_path / "pod-c")
    destination.assert_exact(ROWS)
