"""Fan-out on the local stack: a real Prefect server on PostgreSQL, a process worker with a
pool limit, SeaweedFS for state, PostgreSQL as the destination. Each part is its own flow run
of the fanout-part deployment and its own pipeline; the parent waits and reports.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

import psycopg2
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import PrefectHTTPStatusError

from devstack.stack import LocalStack
from tests.integration.fanout_stack import flows_cli, run_parent, start_stack
from tests.integration.helpers import (
    TERMINAL,
    artifacts,
    flow_run_processes,
    prefect_settings,
    start,
    wait,
)
from tests.integration.paged_api import PagedApi

pytestmark = pytest.mark.xdist_group("fanout")

TABLES = {  # the six source tables: name -> (rows, a column of its own, its values)
    "customers": (900, "email text", "'c' || i || '@example.com'"),
    "orders": (1500, "amount numeric(10, 2)", "i * 1.25"),
    "items": (1200, "sku text", "'sku-' || i"),
    "payments": (800, "paid_at timestamptz", "'2024-01-01'::timestamptz + i * interval '1 h'"),
    "shipments": (600, "carrier text", "(ARRAY['dhl', 'ups'])[1 + i % 2]"),
    "reviews": (400, "stars int", "1 + i % 5"),
}


@pytest.fixture(scope="module")
def api() -> Iterator[PagedApi]:
    server = PagedApi(rows_per_day=60, page_size=20, delay=0.3).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, api: PagedApi) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("fanout-stack")
    stack = None
    try:
        stack = start_stack(root, api)
        with prefect_settings(stack):
            yield stack
    finally:
        (stack or LocalStack(root)).down()


def part_runs(client: SyncPrefectClient, names: list[str]) -> list[FlowRun]:
    for _ in range(10):
        try:
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names))
            )
            return list(found)
        except PrefectHTTPStatusError:  # a loaded server answers 500 now and then
            time.sleep(2)
    raise AssertionError(f"could not read the flow runs {names}")


def most_at_once(runs: list[FlowRun]) -> int:
    """The largest number of runs that were running at one moment."""
    events = sorted(
        [(r.start_time, 1) for r in runs if r.start_time]
        + [(r.end_time, -1) for r in runs if r.end_time]
    )
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def query(stack: LocalStack, sql: str, database: str = "warehouse") -> list[tuple[Any, ...]]:
    with psycopg2.connect(stack.postgres.dsn(database)) as con, con.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def report_of(client: SyncPrefectClient, run_id: UUID, pipeline: str) -> Any:
    return artifacts(client, run_id)[f"{pipeline.replace('_', '-')}-fanout-report"][-1]


def test_backfill_of_twelve_parts_at_parallelism_4_is_exact_and_parts_overlap(
    stack: LocalStack, client: SyncPrefectClient, api: PagedApi
) -> None:
    start, end = date(2024, 1, 1), date(2024, 1, 12)
    params = {"pipeline": "paged", "start_date": str(start), "end_date": str(end)}
    run = run_parent(client, "backfill", {**params, "chunk_days": 1, "parallelism": 4})
    assert run.state is not None and run.state.type == StateType.COMPLETED, run.state
    ids = [i for (i,) in query(stack, "SELECT id FROM paged.events")]
    assert len(ids) == len(set(ids)) and set(ids) == api.ids(start, end)  # exactly the rows
    names = [f"paged--{start.year}01{day:02d}" for day in range(1, 13)]
    runs = part_runs(client, names)
    assert sorted(r.name for r in runs) == names
    assert all(r.state is not None and r.state.type == StateType.COMPLETED for r in runs)
    assert 2 <= most_at_once(runs) <= 4  # parts overlapped, never more than the parallelism
    states = query(stack, "SELECT DISTINCT pipeline_name FROM paged._dlt_pipeline_state")
    assert sorted(n for (n,) in states) == names  # one pipeline (and state) per part
    report = report_of(client, run.id, "paged")
    assert report.description.startswith("paged: 12 parts, 12 completed, 0 failed, 720 rows")

    # rerunning part of the range: the same parts, nothing changes
    again = run_parent(client, "backfill", {**params, "end_date": "2024-01-02", "chunk_days": 1})
    assert again.state is not None and again.state.type == StateType.COMPLETED, again.state
    assert query(stack, "SELECT COUNT(*), COUNT(DISTINCT id) FROM paged.events") == [(720, 720)]

    shown = json.loads(flows_cli(stack, "state", "show", "paged", "--json").stdout)
    assert [p["pipeline"] for p in shown["parts"]] == names
    assert all(p["generation"] > 0 and not p["pending_normalized"] for p in shown["parts"])
    tuned = flows_cli(stack, "tune", "fanout-part", "--pipeline", "paged").stdout
    assert "14 run records" in tuned and "parts of paged: 12" in tuned, tuned


def _make_tables(stack: LocalStack) -> dict[str, int]:
    statements = ["DROP SCHEMA IF EXISTS fanout_src CASCADE", "CREATE SCHEMA fanout_src"]
    for name, (rows, extra, values) in TABLES.items():
        statements += [
            f"CREATE TABLE fanout_src.{name} (id int PRIMARY KEY, label text NOT NULL, {extra})",
            f"INSERT INTO fanout_src.{name} SELECT i, '{name} ' || i, {values} "
            f"FROM generate_series(1, {rows}) i",
        ]
    with psycopg2.connect(stack.postgres.dsn("shop")) as con, con.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    return {name: rows for name, (rows, _, _) in TABLES.items()}


def _copied(stack: LocalStack, table: str) -> tuple[int, int, int]:
    (row,) = query(stack, f"SELECT COUNT(*), COUNT(DISTINCT id), SUM(id) FROM shop_copy.{table}")
    return int(row[0]), int(row[1]), int(row[2] or 0)


def test_sql_database_decomposed_by_table_is_exact_in_one_dataset(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    expected = _make_tables(stack)
    run = run_parent(client, "decompose", {"pipeline": "shop_tables", "parallelism": 3})
    assert run.state is not None and run.state.type == StateType.COMPLETED, run.state
    for table, rows in expected.items():
        assert _copied(stack, table) == (rows, rows, rows * (rows + 1) // 2), table
    found = query(
        stack,
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN "
        f"({', '.join(repr(t) for t in TABLES)}) AND table_schema NOT LIKE '%staging'",
    )
    assert sorted(found) == sorted(("shop_copy", t) for t in TABLES)  # one dataset
    for table, (_, extra, _) in TABLES.items():
        columns = {c for (c,) in query(
            stack,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            f"'shop_copy' AND table_name = '{table}'",
        )}  # fmt: skip
        assert {"id", "label", extra.split()[0], "_dlt_load_id", "_dlt_id"} <= columns, table
    report = report_of(client, run.id, "shop_tables")
    assert report.description.startswith("shop_tables: 6 parts, 6 completed, 0 failed, 5,400 rows")

    again = run_parent(
        client, "decompose", {"pipeline": "shop_tables", "resources": ["orders", "reviews"]}
    )
    assert again.state is not None and again.state.type == StateType.COMPLETED, again.state
    assert report_of(client, again.id, "shop_tables").description.startswith(
        "shop_tables: 2 parts, 2 completed"
    )
    for table, rows in expected.items():
        assert _copied(stack, table) == (rows, rows, rows * (rows + 1) // 2), table


def _loading(stack: LocalStack, part: str) -> bool:
    """Rows of this part's load are committed in its staging table, its package is not
    recorded in _dlt_loads yet: the part is in the middle of its load."""
    try:
        (staged,) = query(stack, f"SELECT COUNT(*) FROM paged_{part}_staging.events")[0]
        (done,) = query(
            stack, f"SELECT COUNT(*) FROM paged._dlt_loads WHERE schema_name LIKE '%{part}'"
        )[0]
    except psycopg2.Error:
        return False
    return bool(staged) and not done


def test_part_killed_during_load_is_the_only_one_retried_and_resumes(
    stack: LocalStack, client: SyncPrefectClient, api: PagedApi
) -> None:
    try:  # the backfill test ran first on this stack, or not
        before = query(stack, "SELECT COUNT(*) FROM paged.events")[0][0]
    except psycopg2.errors.UndefinedTable:
        before = 0
    env = {"DATA_WRITER__FILE_MAX_ITEMS": "1", "LOAD__WORKERS": "1"}  # 60 load jobs a part
    parent = start(
        client,
        "backfill",
        parameters={
            "pipeline": "paged",
            "start_date": "2024-03-01",
            "end_date": "2024-03-03",
            "chunk_days": 1,
            "parallelism": 3,
            "job_variables": {"env": env},
        },
    )
    victim, killed = "20240302", None
    deadline = time.monotonic() + 600
    while killed is None and time.monotonic() < deadline:
        runs = part_runs(client, [f"paged--{victim}"])
        if runs and runs[0].state is not None and runs[0].state.type in TERMINAL:
            break  # it ended before the test could catch its load
        attempts = flow_run_processes(runs[0].id, "flows-attempt") if runs else []
        child = attempts[0] if attempts else None
        while child is not None and child.is_running() and time.monotonic() < deadline:
            if _loading(stack, victim):
                child.send_signal(signal.SIGKILL)
                killed = runs[0]
                break
            time.sleep(0.02)
        time.sleep(0.2)
    assert killed is not None, "the part never reached its load"
    final = wait(client, parent.id, timeout=900)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state

    ids = [i for (i,) in query(stack, "SELECT id FROM paged.events WHERE day >= '2024-03-01'")]
    assert len(ids) == len(set(ids)) and set(ids) == api.ids(date(2024, 3, 1), date(2024, 3, 3))
    assert query(stack, "SELECT COUNT(*) FROM paged.events")[0][0] == before + 180
    counts = {}
    for run in part_runs(client, ["paged--20240301", "paged--20240302", "paged--20240303"]):
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        counts[run.name] = [t.run_count for t in tasks]
    assert counts == {"paged--20240301": [1], "paged--20240302": [2], "paged--20240303": [1]}
    report = artifacts(client, killed.id)["paged-20240302-report"][-1].data
    assert "| **task attempt** | 2 |" in report, report
    assert "1 pending package finished: 1 normalized" in report, report  # its own snapshot
    assert "| **rows extracted (this attempt)** | 0 |" in report, report
    parent_report = report_of(client, parent.id, "paged")
    assert "retried: paged--20240302 (2 attempts)" in parent_report.description
    assert "paged--20240302 | completed (retried) | 2 |" in parent_report.data


def test_two_parts_adding_columns_to_one_table_at_once_keep_both(
    stack: LocalStack, client: SyncPrefectClient
) -> None:
    run = run_parent(client, "decompose", {"pipeline": "two_writers", "parallelism": 2})
    assert run.state is not None and run.state.type == StateType.COMPLETED, run.state
    runs = part_runs(client, ["two_writers--left", "two_writers--right"])
    assert most_at_once(runs) == 2
    assert query(
        stack,
        "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(left_note), COUNT(right_note) FROM wide.wide",
    ) == [(1000, 1000, 500, 500)]
    assert query(
        stack, "SELECT COUNT(*) FROM wide.wide WHERE id < 1000000 AND left_note IS NULL"
    ) == [(0,)]
    # every part's state intact: its own pipeline state and schema in the destination, with
    # its own column, and its snapshot in the store with nothing pending
    states = query(stack, "SELECT DISTINCT pipeline_name FROM wide._dlt_pipeline_state")
    assert sorted(n for (n,) in states) == ["two_writers--left", "two_writers--right"]
    for side in ("left", "right"):
        (schema,) = query(
            stack,
            "SELECT schema FROM wide._dlt_version WHERE schema_name = "
            f"'two_writers__{side}' ORDER BY inserted_at DESC LIMIT 1",
        )[0]
        columns = json.loads(schema)["tables"]["wide"]["columns"]
        assert f"{side}_note" in columns and "id" in columns
    shown = json.loads(flows_cli(stack, "state", "show", "two_writers", "--json").stdout)
    assert [p["pipeline"] for p in shown["parts"]] == ["two_writers--left", "two_writers--right"]
    for part in shown["parts"]:
        assert part["generation"] > 0 and part["lease"] is None
        assert not part["pending_extracted"] and not part["pending_normalized"]
    text = flows_cli(stack, "state", "show", "two_writers").stdout
    assert "parts (2):" in text and "two_writers--left" in text
