"""Exactly-once where a failure comes between a step and its snapshot, or during a load.

Against real SeaweedFS (behind tests/integration/faults.py's proxy), PostgreSQL (behind a
TCP proxy that cuts its connections) and DuckDB. The source is an append resource with no
cursor (plain_append.py): nothing but the platform's resume stops a rerun from loading its
rows twice.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg2
import pytest

from devstack.postgres import Postgres
from devstack.seaweedfs import SeaweedFS
from tests.integration.faults import Fault, FaultProxy, TcpProxy
from tests.integration.helpers import exact, pg_counts, run_cli, synthetic_counts

ROWS = 100_000
PLAIN = "tests.integration.plain_append:plain"


def plain_args(state: str, pod: Path, *more: str) -> list[str]:
    return [
        "run", PLAIN, "--name", "plain", "--dataset", "synthetic",
        "--state-url", state, "--pipelines-dir", str(pod), *more,
    ]  # fmt: skip


@pytest.fixture
def proxy(seaweed: SeaweedFS):  # type: ignore[no-untyped-def]
    with FaultProxy(seaweed.endpoint_url) as running:
        yield running


def test_a_store_outage_after_extract_ends_with_exit_5_and_the_rerun_is_exact(
    proxy: FaultProxy, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """Every manifest write answers 503 for longer than the store's retry window, from the
    first one (the snapshot after extract): the extract must not run again (its package is
    pending), the run ends with exit 5, and the rerun on a fresh pod loads every id once."""
    state = f"s3://{bucket}/state"
    database = tmp_path / "warehouse.duckdb"
    env = {
        **flows_env,
        "AWS_ENDPOINT_URL": proxy.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(database),
        "SOURCES__PLAIN__ROWS": str(ROWS),
        "STATE__RETRY_WINDOW": "3",
        "STATE__RETRY_ATTEMPTS": "0",
    }
    outage = proxy.add(Fault("503", method="PUT", path="/manifests/", times=None))
    first = run_cli(plain_args(state, tmp_path / "pod-a"), env)
    assert first.code == 5, first.stderr[-3000:]
    assert "unreachable" in first.stderr.splitlines()[-1], first.stderr[-3000:]
    assert outage.applied > 0
    # the rows of the only extract never reached the destination
    assert not database.exists() or synthetic_counts(database)["events"] == 0

    proxy.clear()
    rerun = run_cli(plain_args(state, tmp_path / "pod-b", "--json"), env)
    assert rerun.code == 0, rerun.stderr[-3000:]
    counts = synthetic_counts(database)
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS), counts
    assert counts["loads"] == counts["distinct_loads"] == 1, counts


@pytest.mark.parametrize("point", ["extract", "normalize", "load-first", "load-last", "loaded"])
def test_a_retry_of_a_run_killed_anywhere_loads_a_cursorless_source_once(
    point: str, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """The source has no cursor, so only the run id says that the retry (a fresh pod, the
    same --run-id, as Prefect's retries and reruns pass the flow run id) must finish the
    killed attempt's extract instead of extracting again."""
    state = f"s3://{bucket}/state"
    database = tmp_path / "warehouse.duckdb"
    rows = 40_000
    env = {
        **flows_env,
        "DESTINATION__DUCKDB__CREDENTIALS": str(database),
        "SOURCES__PLAIN__ROWS": str(rows),
        "SOURCES__SYNTHETIC__ROWS": str(rows),  # the kill harness's halfway mark
        "DATA_WRITER__FILE_MAX_ITEMS": "4000",
        "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
        "LOAD__WORKERS": "2",
    }
    first = run_cli(plain_args(state, tmp_path / "pod-a", "--run-id", "R1"), env, kill_at=point)
    assert first.code == -9, f"harness did not kill at {point}: {first.stderr[-2000:]}"
    retry = run_cli(plain_args(state, tmp_path / "pod-b", "--run-id", "R1", "--json"), env)
    assert retry.code == 0, retry.stderr[-3000:]
    counts = synthetic_counts(database)
    assert {k: counts[k] for k in exact(rows)} == exact(rows), counts
    assert counts["loads"] == counts["distinct_loads"] == 1, counts
    assert retry.json()["extract_skipped"] is (point != "extract")


def test_a_database_restart_during_load_is_ridden_out(
    proxy: FaultProxy, postgres: Postgres, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """PostgreSQL drops every connection and refuses new ones for 10 s, twice: right after
    extract (the load starts against a server that is down) and once load jobs committed
    (what a restart looks like from the client). The run retries over its window, exits 0,
    and every id is there once."""
    database = f"d{time.monotonic_ns() % 10**9}"
    postgres.create_database(database)
    direct = postgres.dsn(database)
    cutter = TcpProxy("127.0.0.1", postgres.listen_port).start()
    proxied = direct.replace(f":{postgres.listen_port}/", f":{cutter.port}/")
    env = {
        **flows_env,
        "AWS_ENDPOINT_URL": proxy.url,
        "PIPELINES__DESTINATION": "postgres",
        "DESTINATION__POSTGRES__CREDENTIALS": proxied,
        "SOURCES__PLAIN__ROWS": str(ROWS),
        "DATA_WRITER__FILE_MAX_ITEMS": "4000",
        "LOAD__WORKERS": "2",
    }

    def loaded() -> int:
        try:
            with psycopg2.connect(direct) as con, con.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM synthetic.events")
                row = cur.fetchone()
                return int(row[0]) if row else 0
        except psycopg2.Error:
            return 0

    def restart_twice() -> None:
        deadline = time.monotonic() + 240
        while proxy.count("PUT", "/manifests/") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the snapshot after extract: the load has not begun
        cutter.cut(10)
        while loaded() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cutter.cut(10)

    restarts = threading.Thread(target=restart_twice, daemon=True)
    restarts.start()
    try:
        result = run_cli(plain_args(f"s3://{bucket}/state", tmp_path / "pod", "--json"), env)
    finally:
        restarts.join(timeout=1)
        cutter.stop()
    assert cutter.cuts == 2, "the load ended before both restarts could be staged"
    assert result.code == 0, result.stderr[-3000:]
    counts = pg_counts(direct)
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS), counts
    assert counts["loads"] == counts["distinct_loads"] == 1, counts
