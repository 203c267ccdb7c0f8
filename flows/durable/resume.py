"""Finishing what a dead run left behind, without loading anything twice.

A normalized package whose load id is already in the destination's `_dlt_loads` was fully
loaded: it is archived, not loaded again. A package whose every job the snapshot shows as
completed, into append tables of a destination without staging, was loaded too, all but its
`_dlt_loads` record (a kill late in load): load only writes that record. A snapshot is taken
after a job completed, never before, and a completed job never goes back, so a job the
snapshot calls completed has committed; nothing is left to redo (merge and replace tables,
and staged loads, have follow-up jobs that load creates later, so they take the next path).

A package that was partly loaded (some jobs started or completed, which a stale snapshot
may not even show) has its rows removed from every append table by `_dlt_load_id`, and all
its jobs go back to `new_jobs`, so the load starts over from a clean slate: dlt's own resume
would repeat or skip committed jobs.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.utils import get_root_table, get_write_disposition
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from flows import dlt_internals
from flows.durable.job_resume import prove_committed_jobs

log = logging.getLogger(__name__)

# Job files written by normalize; anything else in a package (sql, reference) is a follow-up
# created by load and is recreated when its table chain completes again.
DATA_FORMATS = {"parquet", "jsonl", "typed-jsonl", "insert_values", "csv", "model"}
JOB_FOLDERS = (
    dlt_internals.STARTED_JOBS_FOLDER,
    dlt_internals.COMPLETED_JOBS_FOLDER,
    dlt_internals.FAILED_JOBS_FOLDER,
)
# where the data jobs of a package that job_resume.py may prove are (a failed job resets it)
RESUMABLE_FOLDERS = (
    dlt_internals.NEW_JOBS_FOLDER,
    dlt_internals.STARTED_JOBS_FOLDER,
    dlt_internals.COMPLETED_JOBS_FOLDER,
)


@dataclass
class ResumePlan:
    """What was found pending in the restored working dir and what was done with it."""

    extracted: list[str] = field(default_factory=list)
    normalized: list[str] = field(default_factory=list)
    already_loaded: list[str] = field(default_factory=list)
    # every job committed, only the `_dlt_loads` record missing
    completed: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    # loads a run without state found in the destination but not in `_dlt_loads`
    incomplete: list[str] = field(default_factory=list)
    rows_removed: dict[str, int] = field(default_factory=dict)
    # partly loaded packages whose committed jobs were proven (job_resume.py): only the
    # others load again
    resumed_jobs: list[str] = field(default_factory=list)
    jobs_skipped: int = 0
    jobs_reloaded: int = 0
    # why each reset package could not resume job by job
    reset_reasons: dict[str, str] = field(default_factory=dict)


def package_dir(pipeline: dlt.Pipeline, load_id: str) -> Path:
    return Path(pipeline.working_dir) / "load" / "normalized" / load_id


def loaded_ids(pipeline: dlt.Pipeline, load_ids: Iterable[str]) -> set[str]:
    """The subset of `load_ids` recorded in the destination's `_dlt_loads`."""
    ids = sorted(load_ids)
    if not ids:
        return set()
    if pipeline.destination.destination_type.endswith("filesystem"):
        client = pipeline.destination_client()
        table_dir = client.get_table_dir("_dlt_loads")  # type: ignore[attr-defined]
        try:
            names = client.fs_client.ls(table_dir, detail=False)  # type: ignore[attr-defined]
        except FileNotFoundError:
            return set()
        return {i for i in ids if any(i in os.path.basename(n) for n in names)}
    with pipeline.sql_client() as sql:
        table = sql.make_qualified_table_name("_dlt_loads")
        placeholders = ", ".join(["%s"] * len(ids))
        try:
            rows = sql.execute_sql(
                f"SELECT load_id FROM {table} WHERE load_id IN ({placeholders})", *ids
            )
        except DatabaseUndefinedRelation:
            return set()
    return {str(r[0]) for r in rows or []}


def _has_jobs(path: Path, folders: Iterable[str]) -> bool:
    return any(any((path / folder).iterdir()) for folder in folders if (path / folder).exists())


def package_started(path: Path) -> bool:
    """True when load touched the package: the destination may hold some of its rows."""
    if (path / dlt_internals.APPLIED_SCHEMA_UPDATES_FILE_NAME).exists():
        return True
    return _has_jobs(path, JOB_FOLDERS)


def only_load_record_missing(pipeline: dlt.Pipeline, schema: Schema, path: Path) -> bool:
    """True when every job of the package completed and none will follow (append tables, no
    staging): loading it again would only write its `_dlt_loads` record."""
    if pipeline.staging is not None:
        return False
    unfinished = (
        dlt_internals.NEW_JOBS_FOLDER,
        dlt_internals.STARTED_JOBS_FOLDER,
        dlt_internals.FAILED_JOBS_FOLDER,
    )
    if _has_jobs(path, unfinished):
        return False
    completed = path / dlt_internals.COMPLETED_JOBS_FOLDER
    tables = set()
    for job in completed.iterdir() if completed.exists() else []:
        try:
            parsed = dlt_internals.parse_job_file_name(job.name)
        except Exception:
            return False
        if parsed.file_format not in DATA_FORMATS or parsed.file_format == "model":
            return False
        tables.add(parsed.table_name)
    return bool(tables) and all(
        name in schema.tables and get_write_disposition(schema.tables, name) == "append"
        for name in tables
    )


def remove_package_rows(pipeline: dlt.Pipeline, schema: Schema, load_id: str) -> dict[str, int]:
    """Deletes the package's rows from its append tables; merge and replace redo themselves."""
    if pipeline.destination.destination_type.endswith("filesystem"):
        return {}  # job files are written under names derived from load and file id: rewritten
    removed: dict[str, int] = {}
    tables = schema.data_tables(include_incomplete=False) + [
        schema.tables[name] for name in schema.dlt_table_names() if name in schema.tables
    ]
    # nested tables first, so a join on the root still finds its rows
    for table in sorted(tables, key=lambda t: t.get("parent") is None):
        name = str(table["name"])
        if get_write_disposition(schema.tables, name) != "append":
            continue
        with pipeline.sql_client() as sql:
            qualified = sql.make_qualified_table_name(name)
            if "_dlt_load_id" in table.get("columns", {}):
                where, args = "_dlt_load_id = %s", [load_id]
            elif "_dlt_root_id" in table.get("columns", {}):
                root = sql.make_qualified_table_name(
                    str(get_root_table(schema.tables, name)["name"])
                )
                where = f"_dlt_root_id IN (SELECT _dlt_id FROM {root} WHERE _dlt_load_id = %s)"
                args = [load_id]
            else:
                continue
            try:
                count = sql.execute_sql(f"SELECT COUNT(*) FROM {qualified} WHERE {where}", *args)
                if count and count[0][0]:
                    sql.execute_sql(f"DELETE FROM {qualified} WHERE {where}", *args)
                    removed[name] = int(count[0][0])
            except DatabaseUndefinedRelation:
                continue
    return removed


def reset_package_jobs(path: Path, committed: frozenset[str] = frozenset()) -> None:
    """Moves every data job back to `new_jobs` (those named in `committed`, proven to have
    committed, to `completed_jobs`) and forgets load's bookkeeping for the package."""
    new_jobs = path / dlt_internals.NEW_JOBS_FOLDER
    completed = path / dlt_internals.COMPLETED_JOBS_FOLDER
    for folder in (dlt_internals.NEW_JOBS_FOLDER, *JOB_FOLDERS):
        for job in sorted((path / folder).glob("*")) if (path / folder).exists() else []:
            try:
                parsed = dlt_internals.parse_job_file_name(job.name)
            except Exception:
                job.unlink()  # exception files and other leftovers
                continue
            if parsed.file_format in DATA_FORMATS:
                target = completed if job.name in committed else new_jobs
                if job.parent != target:
                    target.mkdir(exist_ok=True)
                    os.replace(job, target / job.name)
            else:
                job.unlink()
    for job in list(new_jobs.iterdir()):
        parsed = dlt_internals.parse_job_file_name(job.name)
        if parsed.file_format not in DATA_FORMATS:
            job.unlink()
    for leftover in (dlt_internals.PENDING_TRANSITIONS_FOLDER, dlt_internals.EXCEPTIONS_FOLDER):
        shutil.rmtree(path / leftover, ignore_errors=True)
        (path / leftover).mkdir()
    # dlt renames schema_updates.json to applied_schema_updates.json once it initialized the
    # destination for the package; renaming it back makes the next load create missing
    # tables and truncate replace tables again
    applied = path / dlt_internals.APPLIED_SCHEMA_UPDATES_FILE_NAME
    if applied.exists():
        os.replace(applied, path / dlt_internals.SCHEMA_UPDATES_FILE_NAME)


def _file_rows(path: Path, file_format: str) -> int:
    if file_format == "parquet":
        import pyarrow.parquet as pq

        return int(pq.read_metadata(path).num_rows)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        if file_format == "insert_values":
            return sum(1 for line in fh if line.startswith("("))
        if file_format == "csv":
            return max(0, sum(1 for _ in fh) - 1)
        return sum(1 for line in fh if line.strip())


def package_row_counts(path: Path) -> dict[str, int]:
    """Rows per table in a normalized package's data jobs, read from the files themselves.

    Known before load, whatever process normalized the package: a resumed run reports the
    rows it loaded even though it never saw the normalize step.
    """
    counts: dict[str, int] = {}
    for folder in (dlt_internals.NEW_JOBS_FOLDER, *JOB_FOLDERS):
        for job in (path / folder).glob("*") if (path / folder).exists() else []:
            try:
                parsed = dlt_internals.parse_job_file_name(job.name)
            except Exception:
                continue
            if parsed.file_format in DATA_FORMATS and parsed.file_format != "model":
                rows = _file_rows(job, parsed.file_format)
                counts[parsed.table_name] = counts.get(parsed.table_name, 0) + rows
    return counts


def prepare_normalized_packages(
    pipeline: dlt.Pipeline, plan: ResumePlan, trusted: frozenset[str] = frozenset()
) -> None:
    """Archives loaded packages and cleans up every other pending one before it loads.

    `trusted` packages were normalized by this process and never touched by load: they load
    as they are. A package whose jobs all committed only gets its load record. Any other
    package may have rows in the destination even if its job folders say otherwise (a stale
    snapshot), so its rows are removed and its jobs reset.
    """
    pending = list(pipeline.list_normalized_load_packages())
    if not pending:
        return
    done = loaded_ids(pipeline, pending)
    load_schema = dlt_internals.normalized_schema_loader(pipeline)
    for load_id in pending:
        if load_id in done:
            # loaded in truth: drop it (archived packages are not kept by the platform)
            shutil.rmtree(package_dir(pipeline, load_id))
            plan.already_loaded.append(load_id)
            log.info("package %s is already in _dlt_loads: dropped, not loaded again", load_id)
            continue
        if load_id in trusted:
            continue
        schema = load_schema(load_id)
        path = package_dir(pipeline, load_id)
        if only_load_record_missing(pipeline, schema, path):
            plan.completed.append(load_id)
            log.info("package %s: every job had committed; writing its load record", load_id)
            continue
        proof = prove_committed_jobs(pipeline, schema, path, RESUMABLE_FOLDERS)
        if proof.proven:
            if proof.committed or package_started(path):
                reset_package_jobs(path, frozenset(job.path.name for job in proof.committed))
            if proof.committed:
                plan.resumed_jobs.append(load_id)
                plan.jobs_skipped += len(proof.committed)
                plan.jobs_reloaded += len(proof.pending)
                log.info(
                    "package %s was partly loaded: %d jobs proven committed are not loaded "
                    "again, %d load",
                    load_id,
                    len(proof.committed),
                    len(proof.pending),
                )
            continue
        removed = remove_package_rows(pipeline, schema, load_id)
        for table, count in removed.items():
            plan.rows_removed[table] = plan.rows_removed.get(table, 0) + count
        if removed or package_started(path):
            reset_package_jobs(path)
            plan.reset.append(load_id)
            plan.reset_reasons[load_id] = proof.reason
            log.info("package %s was partly loaded: its rows were removed, reloading", load_id)
