"""Run records in the Prefect API: assembled and written after each attempt (the child's CPU
and peak RSS, the container's limits), read back by `flows tune`."""

from __future__ import annotations

import json
import resource
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from uuid import UUID

from flows.attempt.request import Attempt
from flows.progress.records import RunRecord, record_key, requests_from_env
from flows.system.resources import Usage, container_limits, current_usage


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


def usage_of_children() -> Usage:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Usage(children.ru_utime + children.ru_stime, children.ru_maxrss * 1024, 0, 0.0)


def attempt_record(
    request: Attempt,
    report: Mapping[str, Any] | None,
    outcome: str,
    before: Usage,
    wall: float,
    isolate: bool,
) -> RunRecord:
    """The attempt's resource record: the child's CPU and peak RSS, the container's limits."""
    from prefect.runtime import deployment, flow_run

    after = usage_of_children() if isolate else current_usage()
    limits = container_limits()
    cpu_request, memory_request = requests_from_env()
    rows = report["loaded_rows"] if report else {}
    tables = {t: n for t, n in rows.items() if not t.startswith("_dlt")}
    resume = (report or {}).get("resume") or {}
    snapshots = (report or {}).get("snapshots") or {}
    return RunRecord(
        deployment=deployment.name or flow_run.flow_name or request.pipeline,
        pipeline=request.pipeline,
        flow_run_id=request.flow_run_id or "",
        attempt=request.attempt,
        outcome=outcome,
        wall_seconds=round(wall, 3),
        cpu_seconds=round(after.cpu_seconds - before.cpu_seconds, 3),
        peak_rss_bytes=after.peak_rss_bytes,
        rows=sum(tables.values()),
        step_seconds={s["step"]: round(s["seconds"], 3) for s in (report or {}).get("steps", [])},
        tables=tables,
        packages=len((report or {}).get("loaded_packages", [])),
        schema_changes=int((report or {}).get("schema_changes", 0)),
        step_attempts={s["step"]: s["attempts"] for s in (report or {}).get("steps", [])},
        resumed_packages=len(resume.get("extracted", [])) + len(resume.get("normalized", [])),
        resumed_rows=sum(
            n for t, n in (report or {}).get("resumed_rows", {}).items() if not t.startswith("_dlt")
        ),
        lease_takeover=bool((report or {}).get("lease_takeover")),
        snapshots=int(snapshots.get("snapshots", 0)),
        snapshot_bytes=int(snapshots.get("bytes_uploaded", 0)),
        snapshot_seconds=round(float(snapshots.get("seconds", 0.0)), 3),
        cpu_limit=limits.cpu_limit,
        memory_limit=limits.memory_limit,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_throttled_seconds=limits.cpu_throttled_seconds,
    )


def runner_record(report: Any, outcome: str, before: Usage) -> RunRecord:
    """The record of a run of `runner(...)` on a user's own `dlt.pipeline` in a Prefect task
    or flow (PrefectCollector writes it): this process's CPU since `before`, its peak RSS."""
    from prefect.runtime import deployment, flow_run, task_run

    after = current_usage()
    limits = container_limits()
    cpu_request, memory_request = requests_from_env()
    return RunRecord(
        deployment=deployment.name or flow_run.flow_name or report.pipeline,
        pipeline=report.pipeline,
        flow_run_id=str(flow_run.id or ""),
        attempt=int(task_run.run_count or flow_run.run_count or 1),
        outcome=outcome,
        wall_seconds=round(report.seconds, 3),
        cpu_seconds=round(after.cpu_seconds - before.cpu_seconds, 3),
        peak_rss_bytes=after.peak_rss_bytes,
        rows=sum(n for t, n in report.loaded_rows.items() if not t.startswith("_dlt")),
        step_seconds={s.step: round(s.seconds, 3) for s in report.steps},
        cpu_limit=limits.cpu_limit,
        memory_limit=limits.memory_limit,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_throttled_seconds=limits.cpu_throttled_seconds,
    )
