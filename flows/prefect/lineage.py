"""The Prefect side of OpenLineage (flows/progress/lineage.py sends the events): the dlt
run's id and its parents, read from the task's and the flow run's context."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flows.progress.lineage import LineageRun, configured


def lineage_run(task_ctx: Any, run_key: str) -> LineageRun | None:
    """None unless openlineage-python's client is configured in this process's environment."""
    if not configured():
        return None
    from prefect.context import FlowRunContext
    from prefect.runtime import flow_run as runtime

    flow_ctx = FlowRunContext.get()
    flow_run = flow_ctx.flow_run if flow_ctx is not None else None
    created = flow_run.created if flow_run is not None and flow_run.created else None
    task_run = task_ctx.task_run
    root_id = runtime.parent_flow_run_id
    return LineageRun(
        # a flow run's creation time never changes: every attempt and rerun derives the same id
        run_id=LineageRun.run_id_of(run_key, created or datetime.now(UTC)),
        flow_run_id=str(task_run.flow_run_id),
        flow_name=runtime.flow_name,
        root_run_id=root_id,
        root_flow_name=_flow_name(root_id) if root_id else None,
        first_attempt=task_run.run_count <= 1,
        last_try=task_run.run_count > (task_ctx.task.retries or 0),
    )


def _flow_name(flow_run_id: str) -> str | None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        return str(client.read_flow(run.flow_id).name)
