"""Fan-out: the parts of a pipeline as flow runs of a deployment, one Job each on Kubernetes.

    parent flow (backfill, decompose)
      -> run_deployment("fanout-part/fanout-part", timeout=0) for at most `parallelism`
         parts at a time; each part run is its own pipeline (flows/parts/plan.py)
      -> waits; a failed part gets a new flow run (only that part), up to `part_retries`
      -> one report artifact: each part's state, attempts, rows, flow runs

Inside a part run the dlt task retries its own attempts (kill -9, OOM kill) and resumes from
the part's own snapshot. The operator bounds parallelism for every parent at once with the part
deployment's `concurrency_limit` (prefect.yaml) or a tag limit; `parallelism` bounds one parent.
Without the deployment (the embedded default) the parts run one after another in process.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar
from uuid import UUID

import tenacity
from prefect import flow, get_run_logger

from flows.attempt.start import discard_prewarmed
from flows.errors import RetryableError
from flows.parts.plan import Part, parallelism_for, part_name, part_spec
from flows.pipelines import PipelineSpec, get_spec
from flows.prefect.tasks import make_pipeline_task
from flows.progress.artifacts import artifact_key, cell, markdown_table

PART_DEPLOYMENT = "fanout-part/fanout-part"
CRASH_GRACE = 60.0  # seconds a Crashed part may take to be rescheduled by dlt-rerun-crashed
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
API_RETRY_WINDOW = 300.0  # seconds of failing API reads before the parent gives up
T = TypeVar("T")


class PartsFailedError(RetryableError):
    """Some parts still failed after their retries; rerunning the parent reruns every part,
    idempotently."""


@flow(name="fanout-part")
def fanout_part(
    pipeline: str,
    part: str,
    resources: list[str] | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One part of a declared pipeline, as its own pipeline instance into the shared dataset."""
    spec = part_spec(
        get_spec(pipeline), Part(part, tuple(resources or ()), start_date, end_date), options
    )
    result = make_pipeline_task(spec)(dict(spec.options))
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        key=artifact_key(spec.name, "part"),
        table=[{"table": t, "rows": n} for t, n in sorted(result["rows"].items())],
        description=f"{spec.name}: attempt {result['attempt']}, "
        f"{sum(result['rows'].values()):,} rows" + (", resumed" if result["resumed"] else ""),
    )
    return result


@dataclass
class PartOutcome:
    part: Part
    name: str
    flow_runs: list[UUID] = field(default_factory=list)
    tries: int = 0  # flow runs (or in-process runs) of this part
    state: str = "PENDING"
    attempts: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def retried(self) -> bool:
        return self.attempts > 1 or self.tries > 1


def _parameters(pipeline: str, part: Part, options: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "part": part.key,
        "resources": list(part.resources) or None,
        "start_date": part.start_date.isoformat() if part.start_date else None,
        "end_date": part.end_date.isoformat() if part.end_date else None,
        "options": options or None,
    }


def fan_out(
    spec: PipelineSpec,
    parts: list[Part],
    *,
    parallelism: int | None = None,
    options: dict[str, Any] | None = None,
    job_variables: dict[str, Any] | None = None,
    part_retries: int = 1,
    part_deployment: str = PART_DEPLOYMENT,
    poll: float = 1.0,
) -> dict[str, Any]:
    """Runs `parts` of the pipeline `spec`, at most `parallelism` at a time, retrying failed
    parts only; writes the report artifact and returns its summary."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    limit = parallelism_for(spec, parallelism)  # refuses parallel parts into DuckDB
    log = get_run_logger()
    started = time.monotonic()
    outcomes = [PartOutcome(p, part_name(spec.name, p.key)) for p in parts]
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(part_deployment)
        except ObjectNotFound:
            log.warning("no deployment %s: parts run in process", part_deployment)
            _run_inline(spec.name, outcomes, options, part_retries)
        else:
            discard_prewarmed()  # each part runs its attempt in a pod of its own
            log.info(
                "%s: %d parts via %s, %d at a time", spec.name, len(parts), part_deployment, limit
            )
            _run_deployed(
                client, spec.name, outcomes, limit, options, job_variables, part_retries,
                part_deployment, poll,
            )  # fmt: skip
    report = _summary(spec.name, outcomes, time.monotonic() - started)
    _write_report(spec.name, outcomes, report)
    log.info("%s", report["description"])
    failed = [o.name for o in outcomes if o.state != "COMPLETED"]
    if failed:
        raise PartsFailedError(f"{len(failed)} of {len(parts)} parts failed: {', '.join(failed)}")
    return report


def _run_deployed(
    client: Any,
    pipeline: str,
    outcomes: list[PartOutcome],
    limit: int,
    options: dict[str, Any] | None,
    job_variables: dict[str, Any] | None,
    part_retries: int,
    part_deployment: str,
    poll: float,
) -> None:
    from prefect.deployments import run_deployment

    log = get_run_logger()
    queue = deque(outcomes)
    running: dict[UUID, PartOutcome] = {}
    crashed_at: dict[UUID, float] = {}
    while queue or running:
        while queue and len(running) < limit:
            outcome = queue.popleft()
            run: Any = run_deployment(  # a FlowRun: called from a sync flow
                part_deployment,
                parameters=_parameters(pipeline, outcome.part, options),
                timeout=0,
                flow_run_name=outcome.name,
                job_variables=job_variables,
                tags=["fanout", pipeline],
            )
            outcome.flow_runs.append(run.id)
            outcome.tries += 1
            outcome.state = "SCHEDULED"
            running[run.id] = outcome
        time.sleep(poll)
        for run_id, outcome in list(running.items()):
            run = _api(client.read_flow_run, run_id)
            state = run.state.type.value if run.state else "PENDING"
            outcome.state = state
            since = crashed_at.setdefault(run_id, time.monotonic())
            if state == "CRASHED" and time.monotonic() - since < CRASH_GRACE:
                continue  # dlt-rerun-crashed may schedule it again (same run, same lease)
            if state != "CRASHED":
                crashed_at.pop(run_id, None)
            if state not in FINAL:
                continue
            del running[run_id]
            outcome.attempts += _api(_attempts, client, run)
            outcome.seconds += run.total_run_time.total_seconds()
            if state == "COMPLETED":
                outcome.rows = _api(_part_rows, client, run_id, outcome.name)
            elif outcome.tries <= part_retries:
                log.warning("part %s ended %s: running it again", outcome.name, state)
                queue.append(outcome)


def _run_inline(
    pipeline: str, outcomes: list[PartOutcome], options: dict[str, Any] | None, part_retries: int
) -> None:
    log = get_run_logger()
    for outcome in outcomes:
        while outcome.state != "COMPLETED" and outcome.tries <= part_retries:
            outcome.tries += 1
            started = time.monotonic()
            try:
                result = fanout_part(**_parameters(pipeline, outcome.part, options))
            except Exception as err:
                log.warning("part %s failed: %s", outcome.name, err)
                outcome.state, outcome.attempts = "FAILED", outcome.attempts + 1
            else:
                outcome.state, outcome.rows = "COMPLETED", dict(result["rows"])
                outcome.attempts += int(result["attempt"])
            outcome.seconds += time.monotonic() - started


def _api(fn: Callable[..., T], *args: Any) -> T:
    """A read of the API, retried: a parent watching parts for hours must ride out a
    server that answers 500 or times out now and then (the parts go on regardless)."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(API_RETRY_WINDOW),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10) + tenacity.wait_random(0, 1),
        before_sleep=lambda state: get_run_logger().warning(
            "Prefect API read failed, retrying: %s", state.outcome and state.outcome.exception()
        ),
        reraise=True,
    )
    return retrying(fn, *args)


def _attempts(client: Any, run: Any) -> int:
    """Task attempts of one part run (a kill -9 inside it is retried by its dlt task)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return max([run.run_count, 1, *(t.run_count for t in tasks)])


def _part_rows(client: Any, run_id: UUID, name: str) -> dict[str, int]:
    import json

    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            key=ArtifactFilterKey(any_=[artifact_key(name, "part")]),
        )
    )
    if not found:
        return {}
    data = found[-1].data
    table = json.loads(data) if isinstance(data, str) else data
    return {row["table"]: int(row["rows"]) for row in table}


def _summary(pipeline: str, outcomes: list[PartOutcome], wall: float) -> dict[str, Any]:
    completed = [o for o in outcomes if o.state == "COMPLETED"]
    rows: dict[str, int] = {}
    for outcome in completed:
        for table, n in outcome.rows.items():
            rows[table] = rows.get(table, 0) + n
    retried = [f"{o.name} ({o.attempts} attempts)" for o in outcomes if o.retried]
    description = (
        f"{pipeline}: {len(outcomes)} parts, {len(completed)} completed, "
        f"{len(outcomes) - len(completed)} failed, {sum(rows.values()):,} rows in {wall:.1f} s; "
        f"retried: {', '.join(retried) or 'none'}"
    )
    return {
        "pipeline": pipeline,
        "parts": len(outcomes),
        "completed": len(completed),
        "rows": rows,
        "retried": [o.name for o in outcomes if o.retried],
        "seconds": round(wall, 2),
        "description": description,
    }


def _write_report(pipeline: str, outcomes: list[PartOutcome], report: dict[str, Any]) -> None:
    from prefect.artifacts import create_markdown_artifact

    table = markdown_table(
        ["part", "state", "attempts", "flow runs", "rows", "seconds"],
        [
            [
                o.name,
                o.state.lower() + (" (retried)" if o.retried else ""),
                o.attempts,
                ", ".join(str(r) for r in o.flow_runs) or "in process",
                cell(sum(o.rows.values())),
                f"{o.seconds:.1f}",
            ]
            for o in outcomes
        ],
    )
    create_markdown_artifact(
        key=artifact_key(pipeline, "fanout-report"),
        markdown=f"## {report['description']}\n\n{table}\n",
        description=report["description"],
    )
