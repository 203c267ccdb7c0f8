"""The `files` pipeline loads Parquet and CSV as arrow tables: the file's types and values
arrive unchanged (no row-by-row coercion on the way), in as few load jobs as the pod's
memory allows."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from flows.config.sizing import EXTRACT_FILE_ROWS
from flows.durable.run import run_pipeline
from tests.cgroups import run_limited
from tests.integration.helpers import duck

ROWS = 20_000
UTC = dt.UTC


def _table(offset: int) -> pa.Table:
    ids = range(offset, offset + ROWS)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([None if i % 11 == 0 else f"n{i}" for i in ids], pa.string()),
            "price": pa.array([Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
            "ratio": pa.array([i / 7 for i in ids], pa.float64()),
            "flag": pa.array([i % 3 == 0 for i in ids], pa.bool_()),
            "seen_at": pa.array(
                [dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=i) for i in ids],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def test_parquet_and_csv_loaded_exactly(
    flows_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    tables = [_table(0), _table(ROWS)]
    for n, table in enumerate(tables):
        pq.write_table(table, landing / f"part{n}.parquet")
        pyarrow.csv.write_csv(table.drop_columns(["price"]), landing / f"part{n}.csv")
    warehouse = tmp_path / "w.duckdb"
    monkeypatch.setenv("SOURCES__FILES__BUCKET_URL", landing.as_uri())
    monkeypatch.setenv("SOURCES__FILES__FORMATS", '["csv", "parquet"]')
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(warehouse))
    report = run_pipeline("files", state_url=f"file://{tmp_path / 'state'}")
    assert report.loaded_rows["files_parquet"] == report.loaded_rows["files_csv"] == 2 * ROWS

    expected = pa.concat_tables(tables)
    with duck(warehouse) as con:
        types = dict(
            con.sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'files_parquet'"
            ).fetchall()
        )
        assert (types["id"], types["price"], types["ratio"]) == (
            "BIGINT",
            "DECIMAL(12,2)",
            "DOUBLE",
        )
        assert (types["flag"], types["seen_at"]) == ("BOOLEAN", "TIMESTAMP WITH TIME ZONE")
        for table, columns in (
            ("files_parquet", expected.column_names),
            ("files_csv", [c for c in expected.column_names if c != "price"]),
        ):
            got = con.sql(
                f"SELECT {', '.join(columns)} FROM landing.{table} ORDER BY id"
            ).to_arrow_table()
            want = expected.select(columns)
            assert got.num_rows == want.num_rows
            for column in columns:
                assert got[column].to_pylist() == want[column].to_pylist(), (table, column)


JOBS_OF_RUN = """
import collections, json, sys
import dlt
from flows.durable.run import run_pipeline
report = run_pipeline("files", pipelines_dir=sys.argv[1])
info = dlt.attach("files", pipelines_dir=sys.argv[1]).last_trace.last_load_info
jobs = collections.Counter(
    job.job_file_info.table_name
    for package in info.load_packages
    for job in package.jobs["completed_jobs"]
)
print("RESULT", json.dumps({"jobs": jobs, "rows": report.loaded_rows}))
"""


@pytest.mark.parametrize(
    ("formats", "jobs_per_table"),
    [
        # arrow tables only: extracted files rotate like load files (512,000 rows in 2 GiB)
        (["csv", "parquet"], 1),
        # row items too: extracted files keep the rotation normalize's workers share (a file
        # closes once it holds EXTRACT_FILE_ROWS rows: whole tables of ROWS rows)
        (["csv", "parquet", "jsonl"], -(-12 // -(-EXTRACT_FILE_ROWS // ROWS))),
    ],
)
def test_arrow_tables_load_in_as_few_jobs_as_memory_allows(
    flows_env: dict[str, str], tmp_path: Path, formats: list[str], jobs_per_table: int
) -> None:
    """Normalize passes arrow files to the load step as they are: 12 input files of 20,000
    rows per table must not become 12 DuckDB load jobs when one fits the pod. A
    source that also yields row items keeps the extract rotation its normalize workers
    share (the setting is per source)."""
    landing = tmp_path / "landing"
    landing.mkdir()
    for n in range(12):
        table = _table(n * ROWS)
        pq.write_table(table, landing / f"part{n}.parquet")
        pyarrow.csv.write_csv(table, landing / f"part{n}.csv")
        (landing / f"part{n}.jsonl").write_text(
            "".join(json.dumps({"id": i}) + "\n" for i in range(n * ROWS, (n + 1) * ROWS))
        )
    env = {
        **os.environ,
        "SOURCES__FILES__BUCKET_URL": landing.as_uri(),
        "SOURCES__FILES__FORMATS": json.dumps(formats),
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "w.duckdb"),
        "STATE__URL": f"file://{tmp_path / 'state'}",
    }
    proc, _ = run_limited(
        [sys.executable, "-c", JOBS_OF_RUN, str(tmp_path / "pipes")], 2 * 2**30, env, cpus=2.0
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for fmt in formats:
        assert result["rows"][f"files_{fmt}"] == 12 * ROWS
        if fmt != "jsonl":  # row items: normalize writes their load files
            assert result["jobs"][f"files_{fmt}"] == jobs_per_table, result
