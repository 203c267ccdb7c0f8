"""A run with a lost state store and a fresh disk takes dlt's state from the destination.

Real `flows run` processes, a local store and DuckDB. The first run of a pipeline whose
DuckDB file does not exist yet skips that sync (there is nothing to read); a run whose
file exists must still find the incremental cursor there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from flows.durable.runner import runner
from tests.integration.helpers import duck, run_cli


def test_lost_store_and_fresh_disk_resume_from_the_destination_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"FLOWS_HOME": str(home), "SOURCES__SYNTHETIC__ROWS": "500"}

    def run(store: str, pod: str) -> dict[str, int]:
        result = run_cli(
            ["run", "synthetic", "--json", "--pipelines-dir", str(tmp_path / pod)],
            {**env, "STATE__URL": f"file://{tmp_path / store}"},
        )
        assert result.code == 0, result.stderr
        rows: dict[str, int] = json.loads(result.stdout)["extracted_rows"]
        return rows

    warehouse = home / "warehouse" / "flows_synthetic.duckdb"
    assert not warehouse.exists()
    assert run("store1", "pod1").get("events") == 500
    # the store and the pod's disk are gone; the DuckDB file (the destination) is not
    assert run("store2", "pod2").get("events", 0) == 0
    with duck(warehouse) as con:
        assert con.sql("SELECT COUNT(*) FROM synthetic.events").fetchall() == [(500,)]


def _items(upto: int) -> Any:
    """Append rows with a cursor and a nested list, and a merge table keyed on `key`."""

    @dlt.resource(name="items", write_disposition="append")
    def items(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental("id", initial_value=0),
    ) -> Iterator[dict[str, Any]]:
        for i in range(cursor.last_value + 1, upto + 1):
            yield {"id": i, "tags": [f"a{i}", f"b{i}"]}

    @dlt.resource(name="latest", write_disposition="merge", primary_key="key")
    def latest() -> Iterator[dict[str, Any]]:
        yield from ({"key": k, "upto": upto} for k in range(5))

    @dlt.source(name="items_source")
    def source() -> Any:
        return items, latest

    return source()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "duckdb":
        return dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb"))
    postgres = request.getfixturevalue("postgres")
    database = f"d{os.urandom(4).hex()}"
    postgres.create_database(database)
    return dlt.destinations.postgres(postgres.dsn(database))


def test_runner_without_state_removes_the_rows_of_an_unrecorded_load(
    warehouse: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runner(pipeline).run(...)` on a user's pipeline: a load whose jobs all committed but
    whose `_dlt_loads` record never was (a kill right before it) is not in the destination's
    state, so its rows are extracted again; a run without state removes them first."""
    monkeypatch.setenv("FLOWS_HOME", str(tmp_path / "home"))

    def run(pod: str, store: str, upto: int) -> Any:
        pipeline = dlt.pipeline(
            "items_pipeline",
            pipelines_dir=str(tmp_path / pod),
            destination=warehouse,
            dataset_name="items_data",
        )
        return pipeline, runner(pipeline, state_url=f"file://{tmp_path / store}").run(_items(upto))

    run("pod1", "store1", 100)
    pipeline, info = run("pod2", "store1", 250)
    (unrecorded,) = info.loads_ids
    with pipeline.sql_client() as sql:
        sql.execute_sql("DELETE FROM _dlt_loads WHERE load_id = %s", unrecorded)

    pipeline, info = run("pod3", "store2", 250)  # the store and the disk are gone
    resume = info.report.resume
    assert resume.incomplete == [unrecorded]
    # merge tables keyed on a column are upserted again, not cleaned
    assert {k: resume.rows_removed.get(k) for k in ("items", "items__tags", "latest")} == {
        "items": 150,
        "items__tags": 300,
        "latest": None,
    }
    assert info.report.extracted_rows["items"] == 150  # the destination's cursor: 100

    def one(sql: Any, query: str) -> Any:
        return sql.execute_sql(query)[0][0]

    with pipeline.sql_client() as sql:
        assert one(sql, "SELECT COUNT(*) FROM items") == 250
        assert one(sql, "SELECT COUNT(DISTINCT id) FROM items") == 250
        assert one(sql, "SELECT COUNT(*) FROM items__tags") == 500
        assert one(sql, "SELECT COUNT(DISTINCT key) FROM latest") == one(
            sql, "SELECT COUNT(*) FROM latest"
        )
        assert not one(  # dlt's nested rows reach their row through `_dlt_parent_id`
            sql,
            "SELECT COUNT(*) FROM items__tags WHERE _dlt_parent_id NOT IN "
            "(SELECT _dlt_id FROM items)",
        )
        for table in ("items", "latest", "_dlt_pipeline_state"):
            assert not one(
                sql,
                f"SELECT COUNT(*) FROM {table} t WHERE t._dlt_load_id NOT IN "
                "(SELECT load_id FROM _dlt_loads)",
            ), table

    # without state once more: nothing is incomplete, nothing is removed or extracted
    pipeline, info = run("pod4", "store3", 250)
    assert info.report.resume.incomplete == [] and info.report.resume.rows_removed == {}
    assert info.report.extracted_rows.get("items", 0) == 0
