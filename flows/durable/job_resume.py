"""Which jobs of a partly loaded package committed, where that can be proven.

A dead run may have committed some of a package's load jobs. Reloading the whole package
(remove its rows, load every job again: resume.py) is always exact but repeats every
committed job. This module proves, job by job, which ones committed, and the rerun loads
only the others. The proof needs three things, and without any of them the package is reset
as before (when in doubt, reset):

1. **A job commits in one transaction.** dlt's insert-values job (PostgreSQL, DuckDB) runs
   its INSERTs in one transaction; DuckDB's Parquet job is one INSERT statement. Other
   destinations and formats (a COPY in several statements, a filesystem upload, staging) are
   not proven here.
2. **A job's rows can be found.** Every row carries the package's `_dlt_load_id` (nested
   tables too: the platform propagates it) and a `_dlt_id` that names it alone; the job's
   first `_dlt_id` is read from its file. With (1), that row being there means the whole job
   committed, and its absence means none of it did.
3. **The counts agree.** Per table, the destination's rows of the package
   (`_dlt_load_id = <load id>`) must equal the rows of the jobs found committed, as counted
   in their files. Any other figure (a job that was not atomic after all, rows someone
   deleted, a job file that does not match) resets the package.

Only append tables: merge and replace tables get follow-up jobs and staging tables that
load creates again once their chain completes, so such a package is reset.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.utils import get_write_disposition
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from flows import dlt_internals

log = logging.getLogger(__name__)

# (destination type, job file format) whose load job commits in one transaction (see above)
ATOMIC_JOBS = {
    ("postgres", "insert_values"),
    ("duckdb", "insert_values"),
    ("duckdb", "parquet"),
}
ROW_ID = "_dlt_id"
LOAD_ID = "_dlt_load_id"
PROBES_PER_QUERY = 500


@dataclass
class Job:
    """One data job of the package: its file, table, rows and the `_dlt_id` of its first row."""

    path: Path
    table: str
    rows: int
    probe: str | None


@dataclass
class JobProof:
    """The verdict on one package: its committed and pending jobs, or why nothing is proven."""

    committed: list[Job] = field(default_factory=list)
    pending: list[Job] = field(default_factory=list)
    reason: str = ""  # set when the package must be reset

    @property
    def proven(self) -> bool:
        return not self.reason


def prove_committed_jobs(
    pipeline: dlt.Pipeline, schema: Schema, path: Path, folders: Iterable[str]
) -> JobProof:
    """Reads the package's data jobs in `folders` and the destination's rows of the package;
    says which jobs committed, or why that cannot be proven."""
    kind = pipeline.destination.destination_type.rsplit(".", 1)[-1]
    if pipeline.staging is not None:
        return JobProof(reason="a staging destination loads in two hops")
    jobs: list[Job] = []
    for folder in folders:
        for file in sorted((path / folder).glob("*")) if (path / folder).exists() else []:
            try:
                parsed = dlt_internals.parse_job_file_name(file.name)
            except Exception:
                continue  # exception files and other leftovers
            if (kind, parsed.file_format) not in ATOMIC_JOBS:
                return JobProof(
                    reason=f"a {parsed.file_format} job into {kind} is not known to commit in "
                    "one transaction"
                )
            table = parsed.table_name
            why = _unprovable_table(schema, table)
            if why:
                return JobProof(reason=why)
            try:
                rows, probe = read_job(file, parsed.file_format)
            except Exception as err:  # a file that does not read as expected proves nothing
                return JobProof(reason=f"job {file.name} does not read: {err}")
            jobs.append(Job(file, table, rows, probe))
    if not jobs:
        return JobProof(reason="no data jobs to prove")
    load_id = path.name
    try:
        found, counts = _destination_rows(pipeline, load_id, jobs)
    except DatabaseUndefinedRelation:
        found, counts = set(), {}
    proof = JobProof()
    expected: dict[str, int] = {}
    for job in jobs:
        if job.probe is not None and (job.table, job.probe) in found:
            proof.committed.append(job)
            expected[job.table] = expected.get(job.table, 0) + job.rows
        else:
            proof.pending.append(job)
    for table in sorted({job.table for job in jobs}):
        there, want = counts.get(table, 0), expected.get(table, 0)
        if there != want:
            return JobProof(
                reason=f"table {table} holds {there} rows of the package, its committed jobs {want}"
            )
    return proof


def _unprovable_table(schema: Schema, table: str) -> str:
    if table not in schema.tables:
        return f"table {table} is not in the package's schema"
    if get_write_disposition(schema.tables, table) != "append":
        return f"table {table} is not an append table (merge and replace reload whole)"
    columns = schema.tables[table].get("columns", {})
    if LOAD_ID not in columns or ROW_ID not in columns:
        return f"table {table} has no {LOAD_ID} or {ROW_ID} column"
    return ""


def _destination_rows(
    pipeline: dlt.Pipeline, load_id: str, jobs: list[Job]
) -> tuple[set[tuple[str, str]], dict[str, int]]:
    """The (table, probe) pairs present at the destination, and its rows of the package per
    table."""
    found: set[tuple[str, str]] = set()
    counts: dict[str, int] = {}
    by_table: dict[str, list[str]] = {}
    for job in jobs:
        if job.probe is not None:
            by_table.setdefault(job.table, []).append(job.probe)
        by_table.setdefault(job.table, [])
    with pipeline.sql_client() as sql:
        load_col, row_col = sql.escape_column_name(LOAD_ID), sql.escape_column_name(ROW_ID)
        for table, probes in by_table.items():
            qualified = sql.make_qualified_table_name(table)
            try:
                rows = sql.execute_sql(
                    f"SELECT COUNT(*) FROM {qualified} WHERE {load_col} = %s", load_id
                )
            except DatabaseUndefinedRelation:
                counts[table] = 0  # never created: no job of it committed
                continue
            counts[table] = int(rows[0][0]) if rows else 0
            if not counts[table]:
                continue
            for start in range(0, len(probes), PROBES_PER_QUERY):
                chunk = probes[start : start + PROBES_PER_QUERY]
                marks = ", ".join(["%s"] * len(chunk))
                present = sql.execute_sql(
                    f"SELECT {row_col} FROM {qualified} WHERE {load_col} = %s "
                    f"AND {row_col} IN ({marks})",
                    load_id,
                    *chunk,
                )
                found.update((table, str(r[0])) for r in present or [])
    return found, counts


# job files -----------------------------------------------------------------------------------


def read_job(path: Path, file_format: str) -> tuple[int, str | None]:
    """A job file's rows and the `_dlt_id` of its first row (None when it has no rows)."""
    if file_format == "parquet":
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        if not meta.num_rows:
            return 0, None
        first = pq.ParquetFile(path).read_row_group(0, columns=[ROW_ID]).column(0)
        return int(meta.num_rows), str(first[0].as_py())
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        header = fh.readline()
        if fh.readline() != "VALUES\n":
            raise ValueError(f"{path.name} is not an insert-values file")
        names = header.split("(", 1)[1].rsplit(")", 1)[0]
        columns = [c.strip().strip('"') for c in names.split(",")]
        index = columns.index(ROW_ID)
        rows, probe = 0, None
        for line in fh:
            if not line.startswith("("):
                continue
            if probe is None:
                probe = list(_values(line))[index]
            rows += 1
    return rows, probe


def _values(line: str) -> Iterator[str]:
    """The values of one insert-values row `(v1,E'v''2',...)`, string literals unquoted."""
    i, n = line.index("(") + 1, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if (line[i] in "Ee" and i + 1 < n and line[i + 1] == "'") or line[i] == "'":
            escapes = line[i] != "'"
            i += 2 if escapes else 1
            out: list[str] = []
            while i < n:
                ch = line[i]
                if escapes and ch == "\\":
                    out.append(line[i + 1])
                    i += 2
                elif ch == "'" and i + 1 < n and line[i + 1] == "'":
                    out.append("'")
                    i += 2
                elif ch == "'":
                    i += 1
                    break
                else:
                    out.append(ch)
                    i += 1
            yield "".join(out)
        else:
            start, depth = i, 0
            while i < n and not (depth == 0 and line[i] in ",)"):
                depth += {"(": 1, ")": -1}.get(line[i], 0)
                i += 1
            yield line[start:i].strip()
        while i < n and line[i] not in ",)":
            i += 1  # a cast such as ::bytea
        if i >= n or line[i] == ")":
            return
        i += 1
