"""Run records in the Prefect API: written after each attempt, read back by `flows tune`."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from uuid import UUID

from flows.progress.records import RunRecord, record_key


def write_record(record: RunRecord, flow_run_id: UUID | None, task_run_id: UUID | None) -> None:
    """Writes the record synchronously (the attempt is over; nothing else is waiting)."""
    if flow_run_id is None:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(
                key=record_key(record.deployment),
                type="table",
                data=json.dumps([asdict(record)]),
                description=(
                    f"{record.deployment} attempt {record.attempt} {record.outcome}: peak "
                    f"{record.peak_rss_bytes / 2**20:,.0f} MiB, {record.cpu_seconds:.1f} CPU s, "
                    f"{record.wall_seconds:.1f} s"
                ),
                flow_run_id=flow_run_id,
                task_run_id=task_run_id,
            )
        )


def read_records(client: Any, deployment_or_flow: str, limit: int) -> list[RunRecord]:
    """The newest `limit` records, oldest first."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[record_key(deployment_or_flow)])
        ),
        sort=ArtifactSort.CREATED_DESC,
        limit=limit,
    )
    return [RunRecord.from_artifact_data(a.data) for a in reversed(artifacts)]
