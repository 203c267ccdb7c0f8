"""The embedded default end to end: no cluster, no server, DuckDB and a local state store.

Each run adds one landing file per format, so a second run shows incremental loading: the
synthetic source has nothing new (its cursor is restored from the state store) and the
files source reads only the new files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flows.config.settings import default_pipelines_dir, default_state_url, flows_home
from flows.durable.report import format_report
from flows.durable.run import run_pipeline

DEMO_ROWS = 100_000


def write_landing_files(folder: Path, rows: int = 100) -> str:
    """Writes one CSV, JSONL and Parquet file with a new batch of orders."""
    folder.mkdir(parents=True, exist_ok=True)
    batch = len(list(folder.glob("*.csv"))) + 1
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    records = [
        {"order_id": batch * 1_000_000 + i, "batch": batch, "amount": round(i * 1.25, 2)}
        for i in range(rows)
    ]
    with open(folder / f"orders-{batch:04d}-{stamp}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    with open(folder / f"orders-{batch:04d}-{stamp}.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    pq.write_table(pa.Table.from_pylist(records), folder / f"orders-{batch:04d}-{stamp}.parquet")
    return f"batch {batch}"


def table_counts(pipeline_name: str) -> dict[str, int]:
    """Rows per data table in the pipeline's destination (for the demo printout)."""
    from flows.pipelines import get_spec

    pipeline = get_spec(pipeline_name).build_pipeline(default_pipelines_dir())
    counts: dict[str, int] = {}
    with pipeline.sql_client() as sql:
        for table in pipeline.default_schema.data_table_names():
            name = sql.make_qualified_table_name(table)
            rows = sql.execute_sql(f"SELECT COUNT(*) FROM {name}") or [[0]]
            counts[table] = int(rows[0][0])
    return counts


def run_demo(rows: int | None = None) -> int:
    home = flows_home()
    os.environ.setdefault("SOURCES__SYNTHETIC__ROWS", str(rows or DEMO_ROWS))
    landing = home / "landing"
    os.environ.setdefault("SOURCES__FILES__BUCKET_URL", landing.as_uri())
    print(f"embedded default: FLOWS_HOME={home}, state store {default_state_url()}")
    print(f"landing files: wrote {write_landing_files(landing)} to {landing}")
    for name in ("synthetic", "files"):
        report = run_pipeline(name)
        print(format_report(report))
        counts = table_counts(name)
        where = home / "warehouse" / f"flows_{name}.duckdb"
        print(f"  data in {where} (dataset {report.dataset}):")
        for table, count in sorted(counts.items()):
            print(f"    {table:24} {count:>10,} rows")
    return 0


def register(sub: Any) -> None:
    """Adds `demo`."""
    demo = sub.add_parser("demo", help="run the demo pipelines on the embedded default")
    demo.add_argument("--rows", type=int, default=None, help="synthetic rows (default 100000)")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.cli.demo import run_demo

    return run_demo(rows=args.rows)
