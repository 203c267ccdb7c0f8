"""What one benchmark sample runs, in a process of its own inside its own cgroup.

    python -m tests.benchmarks.variants KIND '{"workdir": ..., ...}'

Prints one line `RESULT {json}` with figures only the process knows (step times, row counts);
the harness measures wall time and the cgroup's peak memory from outside.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _steps(trace: Any) -> dict[str, float]:
    return {
        f"{s.step}_s": (s.finished_at - s.started_at).total_seconds()
        for s in trace.steps
        if s.finished_at and s.started_at
    }


def _rows(workdir: Path, table: str, dataset: str) -> tuple[int, int]:
    import duckdb

    with duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True) as con:
        sql = f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {dataset}.{table}"
        count, distinct = con.sql(sql).fetchall()[0]
    return int(count), int(distinct)


def synthetic_arrow(rows: int, batch_size: int = 50_000) -> Any:
    """The synthetic `events` rows (without the nested tags) as arrow tables."""
    import dlt
    import pyarrow as pa
    import pyarrow.compute as pc

    from flows.sources.synthetic import EPOCH

    @dlt.resource(name="events", write_disposition="append", primary_key="id")
    def events() -> Iterator[Any]:
        for first in range(1, rows + 1, batch_size):
            ids = pa.array(range(first, min(first + batch_size, rows + 1)), pa.int64())
            seconds = pc.multiply(ids, 1_000_000)
            at = pc.add(
                pa.scalar(EPOCH, pa.timestamp("us", tz="UTC")),
                seconds.cast(pa.duration("us")),
            )
            payload = pc.utf8_rpad(pc.cast(ids, pa.string()), 50, "x")
            yield pa.table({"id": ids, "updated_at": at, "payload": payload})

    return events


def plain(workdir: Path, source: str = "synthetic") -> dict[str, Any]:
    """`pipeline.run()` with the platform's dlt settings, nothing else (no state store)."""
    import dlt

    from flows.config.settings import apply_platform_defaults
    from flows.pipelines import get_spec

    spec = get_spec("synthetic")
    apply_platform_defaults(spec.destination_name(), spec.name)
    pipeline = dlt.pipeline(
        "synthetic",
        pipelines_dir=str(workdir / "pipes"),
        dataset_name="synthetic",
        destination=dlt.destinations.duckdb(str(workdir / "warehouse.duckdb")),
    )
    data = (
        spec.build_source()
        if source == "synthetic"
        else synthetic_arrow(int(os.environ["SOURCES__SYNTHETIC__ROWS"]))
    )
    pipeline.run(data, loader_file_format=spec.loader_file_format())
    return _steps(pipeline.last_trace)


def flows_run(
    workdir: Path,
    pipeline: str = "synthetic",
    pod: str = "pod",
    name: str | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`flows run PIPELINE [--name NAME] EXTRA...`: lease, restore, run, snapshots to the
    state store (STATE__URL).

    The CLI's own `main`, its report read from `--json`; `main()` below ends this process
    with the CLI's `exit_now`, as the `flows` command does."""
    from flows.cli import main as flows_main

    out = io.StringIO()
    argv = ["run", pipeline, "--json", "--pipelines-dir", str(workdir / pod), *extra]
    if name is not None:
        argv += ["--name", name]
    with contextlib.redirect_stdout(out):
        code = flows_main(argv)
    if code != 0:
        raise SystemExit(code)
    report = json.loads(out.getvalue())
    resume = report["resume"]
    return {
        **{f"{s['step']}_s": s["seconds"] for s in report["steps"]},
        "resumed": len(resume["normalized"]) + len(resume["extracted"]),
        "extracted": sum(report["extracted_rows"].values()),
        "segments": len(report["checkpoints"]["segments"]),
    }


def prefect_flow(
    workdir: Path, pipeline: str = "synthetic", isolate: bool = True
) -> dict[str, Any]:
    """A Prefect flow whose task runs the pipeline with the collector: in an isolated attempt
    (the default), or in the task's own process (`isolate=False`)."""
    from flows.prefect.tasks import make_pipeline_flow

    result = make_pipeline_flow(pipeline, f"bench-{pipeline}", isolate=isolate)()
    return {"rows": sum(result["rows"].values())}


def copy_csv(workdir: Path, table: str = "products") -> dict[str, Any]:
    """`psql \\copy` of the table to CSV, then DuckDB `read_csv` into a table."""
    import duckdb

    from devstack.postgres import find_bin_dir

    csv = workdir / f"{table}.csv"
    subprocess.run(
        [
            str(find_bin_dir() / "psql"),
            os.environ["SOURCES__PRODUCTS__CREDENTIALS"],
            "-q",
            "-c",
            f"\\copy {table} TO '{csv}' WITH (FORMAT csv, HEADER)",
        ],
        check=True,
    )
    with duckdb.connect(str(workdir / "warehouse.duckdb")) as con:
        con.sql(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{csv}')")
        rows = con.sql(f"SELECT COUNT(*) FROM {table}").fetchall()[0][0]
    return {"rows": rows}


def duckdb_files(workdir: Path, folder: str) -> dict[str, Any]:
    """DuckDB reading the same Parquet and CSV files directly into tables."""
    import duckdb

    with duckdb.connect(str(workdir / "warehouse.duckdb")) as con:
        for fmt in ("parquet", "csv"):
            con.sql(f"CREATE TABLE files_{fmt} AS SELECT * FROM read_{fmt}('{folder}/*.{fmt}')")
        rows = con.sql("SELECT COUNT(*) FROM files_parquet").fetchall()[0][0]
    return {"rows": rows}


KINDS: dict[str, Callable[..., dict[str, Any]]] = {
    "plain": plain,
    "flows_run": flows_run,
    "prefect_flow": prefect_flow,
    "copy_csv": copy_csv,
    "duckdb_files": duckdb_files,
}


def main() -> int:
    kind, raw = sys.argv[1], json.loads(sys.argv[2])
    workdir = Path(raw.pop("workdir"))
    result = KINDS[kind](workdir, **raw)
    if (table := os.environ.get("BENCH_CHECK_TABLE")) is not None:
        dataset, _, name = table.partition(".")
        result["count"], result["distinct"] = _rows(workdir, name, dataset)
    print("RESULT " + json.dumps(result), flush=True)
    if kind == "flows_run":
        from flows.system.exits import exit_now

        exit_now(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
