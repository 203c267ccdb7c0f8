"""A run that starts without state leaves the destination exact.

With no snapshot and no local state (a first run, `flows state drop`, a lost store), dlt's
state comes from the destination: the newest `_dlt_pipeline_state` row of a load recorded
in `_dlt_loads`. A load that a dead run left unfinished has no such record, so its cursor is
lost and its rows are extracted again; whatever it committed must go first. Its rows are
found by `_dlt_load_id` in every table of the pipeline's schemas as stored in the
destination's `_dlt_version` (nested tables carry `_dlt_load_id` too), and nested rows left
without their root row are removed with them.

Merge tables with a primary or merge key are left alone: the reload upserts the same keys
(scd2 tables are not repaired either). Replace tables are cleaned like append tables; their
next load truncates them anyway. SQL destinations only: the filesystem destination has no
transaction to undo, and its files are named by load id (docs/resume.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.destination.client import WithStateSync
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTableSchema
from dlt.common.schema.utils import (
    get_merge_strategy,
    get_root_table,
    get_write_disposition,
    has_column_with_prop,
    normalize_schema_name,
)
from dlt.destinations.exceptions import DatabaseUndefinedRelation

if TYPE_CHECKING:  # for annotations only
    from dlt.destinations.job_client_impl import SqlJobClientBase
    from dlt.destinations.sql_client import SqlClientBase

from flows import dlt_internals
from flows.durable.resume import ResumePlan

log = logging.getLogger(__name__)

LOAD_ID = "_dlt_load_id"
STATE_TABLE = "_dlt_pipeline_state"


def start_without_state(pipeline: dlt.Pipeline, data: Any) -> ResumePlan:
    """Removes the rows of loads the destination never completed, before a run that starts
    without state (after `pipeline.sync_destination()`) extracts them again.

    `data` is what the run extracts: its schema is looked up too, so the rows of a first
    load that never completed are found although no state names that schema. Costs one
    query when nothing is incomplete (plus one per schema the sync did not restore).
    """
    plan = ResumePlan()
    client = _sql_job_client(pipeline)
    if client is None:
        return plan
    with client:
        names = {*pipeline.schema_names, _schema_name(pipeline, data)}
        tables = _repairable_tables(_stored_schemas(pipeline, client, names))
        if not tables:
            return plan
        sql = client.sql_client
        try:
            incomplete = _incomplete_loads(sql, tables, pipeline.pipeline_name)
        except DatabaseUndefinedRelation:  # a table the schema knows was never created
            tables = _existing(client, tables)
            incomplete = _incomplete_loads(sql, tables, pipeline.pipeline_name)
        if not incomplete:
            return plan
        plan.incomplete = incomplete
        plan.rows_removed = _remove(
            sql, _existing(client, tables), incomplete, pipeline.pipeline_name
        )
    log.info(
        "%s starts without state: removed %s of %d loads the destination never completed (%s)",
        pipeline.pipeline_name,
        plan.rows_removed or "no rows",
        len(incomplete),
        ", ".join(incomplete),
    )
    return plan


def _sql_job_client(pipeline: dlt.Pipeline) -> SqlJobClientBase | None:
    """The job client dlt's own sync opens, if the destination speaks SQL (a client named
    after the pipeline would be refused for fan-out parts: `daily_events--20240101-...`)."""
    if pipeline.destination is None:
        return None
    client = dlt_internals.sync_destination_client(pipeline)
    return client if dlt_internals.is_sql_job_client(client) else None


def _schema_name(pipeline: dlt.Pipeline, data: Any) -> str:
    """The schema `pipeline.extract(data)` writes into: a source's own, else the default."""
    schema = getattr(data, "schema", None)
    if isinstance(schema, Schema):
        return schema.name
    return pipeline.default_schema_name or normalize_schema_name(pipeline.pipeline_name)


def _stored_schemas(
    pipeline: dlt.Pipeline, client: WithStateSync, names: Iterable[str]
) -> list[Schema]:
    """The schemas as stored in the destination's `_dlt_version`: those the sync restored,
    and the newest stored version of any other name (none on a first run)."""
    schemas = []
    for name in sorted(names):
        if name in pipeline.schemas:
            schemas.append(pipeline.schemas[name])
            continue
        try:
            stored = client.get_stored_schema(name)
        except DatabaseUndefinedRelation:  # no dataset yet
            return schemas
        if stored is not None:
            schemas.append(Schema.from_dict(json.loads(stored.schema)))
    return schemas


def _repairable_tables(schemas: Iterable[Schema]) -> dict[str, TTableSchema]:
    """Tables whose rows of an unfinished load must go, by name; each with its root."""
    found: dict[str, TTableSchema] = {}
    for schema in schemas:
        tables = schema.tables
        names = [t["name"] for t in schema.data_tables(include_incomplete=False)]
        for name in [*names, STATE_TABLE]:
            if name in tables and name not in found and _repairable(tables, name):
                found[name] = tables[name]
    return found


def _repairable(tables: dict[str, TTableSchema], name: str) -> bool:
    """False for merge tables that dedupe on a key (the reload upserts them) and scd2."""
    if get_write_disposition(tables, name) != "merge":
        return True
    root = get_root_table(tables, name)
    keyed = has_column_with_prop(root, "primary_key") or has_column_with_prop(root, "merge_key")
    return get_merge_strategy(tables, name) in (None, "delete-insert") and not keyed


def _load_id_selects(
    sql: SqlClientBase[Any], tables: dict[str, TTableSchema], pipeline_name: str
) -> tuple[list[str], list[Any]]:
    """One `SELECT DISTINCT _dlt_load_id` per table that has it; the state table only for
    this pipeline's rows (other pipelines may share the dataset)."""
    selects, args = [], []
    column = sql.escape_column_name(LOAD_ID)
    for name, table in tables.items():
        if LOAD_ID not in table.get("columns", {}):
            continue
        select = f"SELECT DISTINCT {column} AS load_id FROM {sql.make_qualified_table_name(name)}"
        if name == STATE_TABLE:
            select += f" WHERE {sql.escape_column_name('pipeline_name')} = %s"
            args.append(pipeline_name)
        selects.append(select)
    return selects, args


def _incomplete_loads(
    sql: SqlClientBase[Any], tables: dict[str, TTableSchema], pipeline_name: str
) -> list[str]:
    """Load ids with rows in `tables` but no `_dlt_loads` record, in one query; a load whose
    state row names another pipeline is that pipeline's, maybe still running: not ours."""
    selects, args = _load_id_selects(sql, tables, pipeline_name)
    if not selects:
        return []
    loads = sql.make_qualified_table_name("_dlt_loads")
    query = (
        f"SELECT u.load_id FROM ({' UNION '.join(selects)}) AS u WHERE u.load_id IS NOT NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {loads} AS l WHERE l.load_id = u.load_id)"
    )
    rows = sql.execute_sql(query, *args)
    found = sorted({str(r[0]) for r in rows or []})
    if found and STATE_TABLE in tables:
        others = sql.execute_sql(
            f"SELECT DISTINCT {sql.escape_column_name(LOAD_ID)} FROM "
            f"{sql.make_qualified_table_name(STATE_TABLE)} WHERE "
            f"{sql.escape_column_name('pipeline_name')} <> %s AND "
            f"{sql.escape_column_name(LOAD_ID)} IN ({', '.join(['%s'] * len(found))})",
            pipeline_name,
            *found,
        )
        found = [i for i in found if i not in {str(r[0]) for r in others or []}]
    return found


def _existing(client: SqlJobClientBase, tables: dict[str, TTableSchema]) -> dict[str, TTableSchema]:
    """The tables that exist in the destination (a failed statement would abort a
    PostgreSQL transaction, so missing ones are left out up front)."""
    return {name: tables[name] for name, columns in client.get_storage_tables(tables) if columns}


def _remove(
    sql: SqlClientBase[Any],
    tables: dict[str, TTableSchema],
    load_ids: list[str],
    pipeline_name: str,
) -> dict[str, int]:
    """Deletes the rows of `load_ids`, then nested rows whose root (or parent) row is gone,
    in one transaction; returns the rows removed per table."""
    removed: dict[str, int] = {}
    placeholders = ", ".join(["%s"] * len(load_ids))
    column = sql.escape_column_name(LOAD_ID)
    with sql.begin_transaction():
        for name, table in tables.items():
            if LOAD_ID not in table.get("columns", {}):
                continue
            where, args = f"{column} IN ({placeholders})", list(load_ids)
            if name == STATE_TABLE:
                where += f" AND {sql.escape_column_name('pipeline_name')} = %s"
                args.append(pipeline_name)
            _delete(sql, name, where, args, removed)
        for name in sorted(tables, key=lambda n: _depth(tables, n)):
            if owner := _owner(tables, name):
                link, above = owner
                where = (
                    f"{sql.escape_column_name(link)} NOT IN (SELECT "
                    f"{sql.escape_column_name('_dlt_id')} FROM "
                    f"{sql.make_qualified_table_name(above)})"
                )
                _delete(sql, name, where, [], removed)
    return removed


def _depth(tables: dict[str, TTableSchema], name: str) -> int:
    """0 for a root table, 1 for its nested tables, ...: parents are cleaned first."""
    depth = 0
    while name in tables and (parent := tables[name].get("parent")):
        name, depth = parent, depth + 1
    return depth


def _owner(tables: dict[str, TTableSchema], name: str) -> tuple[str, str] | None:
    """How a nested table's rows reach the row they belong to: `_dlt_root_id` to the root
    table (the platform's propagation), else `_dlt_parent_id` to the parent (dlt's
    default); None for a root table, or when that table is not among `tables`."""
    parent = tables[name].get("parent")
    if parent is None:
        return None
    root = parent
    while root in tables and (above := tables[root].get("parent")):
        root = above
    columns = tables[name]["columns"]
    if "_dlt_root_id" in columns and root in tables:
        return "_dlt_root_id", root
    if "_dlt_parent_id" in columns and parent in tables:
        return "_dlt_parent_id", parent
    return None


def _delete(
    sql: SqlClientBase[Any], name: str, where: str, args: list[Any], removed: dict[str, int]
) -> None:
    """Counts, then deletes the rows of `name` matching `where`."""
    qualified = sql.make_qualified_table_name(name)
    count = sql.execute_sql(f"SELECT COUNT(*) FROM {qualified} WHERE {where}", *args)
    if count and count[0][0]:
        sql.execute_sql(f"DELETE FROM {qualified} WHERE {where}", *args)
        removed[name] = removed.get(name, 0) + int(count[0][0])
