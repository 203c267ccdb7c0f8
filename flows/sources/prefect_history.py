"""Run history from the Prefect API into the warehouse: flow runs, task runs, state changes
and artifacts (run records included), so it can be queried with SQL.

Incremental on the flow runs' `end_time`: a second run reads only runs finished since.
Task runs, states and artifacts are read for those flow runs only. Merged on id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.sources import DltResource

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _flow_run_row(run: Any) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "name": run.name,
        "flow_id": str(run.flow_id),
        "deployment_id": str(run.deployment_id) if run.deployment_id else None,
        "state_type": run.state_type.value if run.state_type else None,
        "state_name": run.state_name,
        "run_count": run.run_count,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "total_run_time_s": run.total_run_time.total_seconds(),
        "tags": json.dumps(sorted(run.tags)),
        "parameters": json.dumps(run.parameters, default=str),
        "job_variables": json.dumps(run.job_variables or {}, default=str),
        "created": run.created,
    }


def _paged(read: Callable[..., list[Any]], page_size: int, **filters: Any) -> Iterator[Any]:
    """Every item of a filtered API read, page by page (the API caps `limit`)."""
    offset = 0
    while True:
        page = read(**filters, limit=page_size, offset=offset)
        yield from page
        if len(page) < page_size:
            return
        offset += page_size


@dlt.source(name="prefect_history")
def prefect_history(page_size: int = 200) -> list[DltResource]:
    """Reads the API configured for Prefect (PREFECT_API_URL, PREFECT_API_AUTH_STRING)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    @dlt.resource(name="prefect_flow_runs", primary_key="id", write_disposition="merge")
    def flow_runs(
        end_time: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            "end_time", initial_value=EPOCH
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        with get_client(sync_client=True) as client:
            runs = _paged(
                client.read_flow_runs,
                page_size,
                flow_run_filter=FlowRunFilter(
                    end_time=FlowRunFilterEndTime(after_=end_time.last_value)  # type: ignore[arg-type]
                ),
                sort=FlowRunSort.END_TIME_DESC,
            )
            batch: list[dict[str, Any]] = []
            for run in runs:
                if run.end_time is not None:
                    batch.append(_flow_run_row(run))
                if len(batch) >= page_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    @dlt.transformer(
        data_from=flow_runs, name="prefect_task_runs", primary_key="id", write_disposition="merge"
    )
    def task_runs(runs: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        ids = [r["id"] for r in runs]
        with get_client(sync_client=True) as client:
            found = _paged(
                client.read_task_runs,
                page_size,
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            )
            yield [
                {
                    "id": str(t.id),
                    "flow_run_id": str(t.flow_run_id),
                    "name": t.name,
                    "task_key": t.task_key,
                    "state_type": t.state_type.value if t.state_type else None,
                    "state_name": t.state_name,
                    "run_count": t.run_count,
                    "tags": json.dumps(t.tags),
                    "start_time": t.start_time,
                    "end_time": t.end_time,
                    "total_run_time_s": t.total_run_time.total_seconds(),
                }
                for t in found
            ]

    @dlt.transformer(
        data_from=flow_runs,
        name="prefect_flow_run_states",
        primary_key="id",
        write_disposition="merge",
    )
    def states(runs: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        with get_client(sync_client=True) as client:
            for run in runs:
                yield [
                    {
                        "id": str(s.id),
                        "flow_run_id": run["id"],
                        "type": s.type.value,
                        "name": s.name,
                        "timestamp": s.timestamp,
                        "message": s.message,
                    }
                    for s in client.read_flow_run_states(run["id"])
                ]

    @dlt.transformer(
        data_from=flow_runs, name="prefect_artifacts", primary_key="id", write_disposition="merge"
    )
    def artifacts(runs: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        with get_client(sync_client=True) as client:
            found = _paged(
                client.read_artifacts,
                page_size,
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[r["id"] for r in runs])
                ),
            )
            yield [
                {
                    "id": str(a.id),
                    "key": a.key,
                    "type": a.type,
                    "description": a.description,
                    "data": a.data if isinstance(a.data, str) else json.dumps(a.data),
                    "flow_run_id": str(a.flow_run_id) if a.flow_run_id else None,
                    "task_run_id": str(a.task_run_id) if a.task_run_id else None,
                    "created": a.created,
                }
                for a in found
            ]

    return [flow_runs, task_runs, states, artifacts]
