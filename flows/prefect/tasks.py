"""`@dlt_task` and the task/flow factories: a pipeline becomes a Prefect task in a few lines.

    @dlt_task(pipeline="products")                     # a declared pipeline
    def products_incremental(table: str = "products") -> DltSource:
        return products(table=table)

    @dlt_task(pipeline_name="my_api", destination="duckdb", dataset_name="raw")
    def my_api() -> DltSource:                          # or declared right here
        return rest_api_source(...)

The decorated function only builds the source (any dlt source or resource). The task takes
the pipeline's lease, restores its state, runs it with the runner and the PrefectCollector,
and releases.
By default each attempt runs in a child process with an empty working dir, exactly like
a fresh pod: when that process dies (OOM kill, kill -9), Prefect retries the task with
backoff and jitter and the new attempt resumes from the state store.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prefect import Flow, Task, flow, get_run_logger, task
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from flows.attempt.request import Attempt
from flows.errors import (
    COMPLETED,
    FAILED,
    PipelineAttemptError,
    TerminalPipelineError,
    attempt_outcome,
    cause_name,
    is_terminal,
)
from flows.pipelines import PipelineSpec
from flows.prefect.lineage import lineage_run
from flows.prefect.records import attempt_record, usage_of_children, write_record
from flows.prefect.reruns import before_attempt
from flows.prefect.source_reference import source_reference
from flows.prefect.supervise import execute, execute_in_child
from flows.system.quantities import check_pod_resources
from flows.system.resources import container_limits, current_usage

# moved to flows/errors.py, source_reference.py and supervise.py; importable from here too
__all__ = [
    "PipelineAttemptError",
    "TerminalPipelineError",
    "dlt_task",
    "execute",
    "execute_in_child",
    "make_pipeline_flow",
    "make_pipeline_task",
    "should_retry",
    "source_reference",
    "summary",
]


def should_retry(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: everything but terminal errors (flows/errors.py)."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as err:  # the result itself could not be read
        error = err
    return not (isinstance(error, BaseException) and is_terminal(error))


def summary(report: Mapping[str, Any], attempt: int) -> dict[str, Any]:
    """The small result a task returns (full details are in the artifacts)."""
    rows = {t: n for t, n in report["loaded_rows"].items() if not t.startswith("_dlt")}
    resume = report["resume"]
    return {
        "pipeline": report["pipeline"],
        "rows": rows,
        "resumed": bool(resume["extracted"] or resume["normalized"]),
        "attempt": attempt,
        "seconds": round(report["seconds"], 2),
    }


def summary_line(result: Mapping[str, Any]) -> str:
    """The task's result in words, for the log."""
    rows = ", ".join(f"{t} {n:,} rows" for t, n in sorted(result["rows"].items()))
    resumed = ", resumed pending work" if result["resumed"] else ""
    return (
        f"pipeline {result['pipeline']} done in {result['seconds']:.2f} s (attempt "
        f"{result['attempt']}{resumed}): {rows or 'no new rows'}"
    )


def _declared(pipeline: str | PipelineSpec) -> tuple[str, PipelineSpec | None]:
    """Where a pipeline enters a task: its name, and its whole declaration when it has none
    elsewhere. A declared one travels by name: the attempt looks it up (this process needs
    no dlt: flows/errors.py), and a bad declaration fails it terminally (ConfigError),
    which Prefect does not retry."""
    return (pipeline, None) if isinstance(pipeline, str) else (pipeline.name, pipeline)


def _run_task(
    name: str,
    spec: PipelineSpec | None,
    source: Callable[..., Any] | str | None,
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    full_refresh: bool,
    isolate: bool,
    state_url: str | None,
    lease_wait: float,
) -> dict[str, Any]:
    log = get_run_logger()
    check_pod_resources()  # requests above limits: terminal, before any work
    ctx = TaskRunContext.get()
    assert ctx is not None, "a dlt task runs inside a Prefect task run"
    run_key = f"{ctx.task_run.flow_run_id}/{ctx.task_run.task_key}/{ctx.task_run.dynamic_key}"
    request = Attempt(
        pipeline=name,
        spec=spec,
        source=source,
        args=tuple(args),
        kwargs=dict(kwargs),
        full_refresh=full_refresh,
        state_url=state_url,
        lease_wait=lease_wait,
        flow_run_id=str(ctx.task_run.flow_run_id),
        task_run_id=str(ctx.task_run.id),
        run_key=run_key,
        attempt=ctx.task_run.run_count,
        lineage=lineage_run(ctx, run_key),
    )
    from prefect.runtime import flow_run

    before_attempt(ctx.task_run.flow_run_id, flow_run.run_count, log)
    log.info("running pipeline %s (attempt %d)", name, request.attempt)
    before = usage_of_children() if isolate else current_usage()
    limits_before = container_limits()
    started = time.perf_counter()
    report: dict[str, Any] | None = None
    outcome, error = FAILED, ""
    try:
        report = execute_in_child(request, log) if isolate else execute(request)
        outcome = COMPLETED
    except Exception as err:
        outcome = attempt_outcome(err)  # carried by the attempt's error (flows/errors.py)
        error = cause_name(err)
        raise
    finally:
        wall = time.perf_counter() - started
        record = attempt_record(request, report, outcome, before, wall, isolate)
        record.cpu_throttled_seconds -= limits_before.cpu_throttled_seconds
        record.oom_killed = container_limits().oom_kills > limits_before.oom_kills
        record.error = error
        for warning in record.warnings():
            log.warning("%s: %s", name, warning)
        try:
            write_record(record, ctx.task_run.flow_run_id, ctx.task_run.id)
        except Exception as err:  # a record must never fail the run
            log.warning("could not write the run record: %s", err)
    result = summary(report, request.attempt)
    log.info("%s", summary_line(result))
    return result


def _task_options(pipeline: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": pipeline,
        "retries": 3,
        "retry_delay_seconds": exponential_backoff(backoff_factor=10),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": should_retry,
        "tags": ["dlt", pipeline],
        "log_prints": True,
    }
    options.update(overrides)
    return options


def dlt_task(
    fn: Callable[..., Any] | None = None,
    *,
    pipeline: str | None = None,
    pipeline_name: str | None = None,
    destination: str | None = None,
    dataset_name: str | None = None,
    full_refresh: bool = False,
    isolate: bool = True,
    state_url: str | None = None,
    lease_wait: float = 0.0,
    **task_kwargs: Any,
) -> Any:
    """Decorates a function that returns a dlt source or resource.

    `pipeline` names a declared pipeline (its destination and dataset); or give
    `pipeline_name` (default: the function's name), `destination` and `dataset_name` to
    declare one here. The isolated child process finds the function by its import path, or
    receives it by value when it is not importable (a flow file loaded from a path): it
    never imports the flow's module for its side effects. Defaults: retries=3, exponential
    backoff (factor 10) with jitter 0.5, tags ["dlt", pipeline]; any `prefect.task` option
    overrides them. `isolate=False` runs attempts in the task's own process.
    """
    if pipeline is not None and (pipeline_name or destination or dataset_name):
        raise TypeError("dlt_task: give a declared `pipeline` or `pipeline_name`/..., not both")

    def decorate(source_fn: Callable[..., Any]) -> Task[..., dict[str, Any]]:
        source = source_reference(source_fn)
        name, spec = _declared(
            pipeline
            or PipelineSpec(
                name=pipeline_name or source_fn.__name__,
                source=source,
                dataset_name=dataset_name or "",
                destination=destination,
                declared_in=f"@dlt_task on {getattr(source_fn, '__qualname__', source_fn)}",
            )
        )

        def body(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return _run_task(
                name, spec, source, args, kwargs, full_refresh, isolate, state_url, lease_wait
            )

        body.__name__ = source_fn.__name__
        body.__doc__ = source_fn.__doc__
        body.__signature__ = inspect.signature(source_fn)  # type: ignore[attr-defined]
        return task(**_task_options(name, task_kwargs))(body)

    return decorate(fn) if fn is not None else decorate


def make_pipeline_task(
    pipeline: str | PipelineSpec,
    *,
    full_refresh: bool = False,
    isolate: bool = True,
    **task_kwargs: Any,
) -> Task[..., dict[str, Any]]:
    """A task that runs a declared pipeline (looked up when it runs, so that a flow module
    imports without reading any config); its parameter is the source's options."""
    name, spec = _declared(pipeline)
    task_name = f"{name}-full-refresh" if full_refresh else name

    def body(source_options: dict[str, Any] | None = None) -> dict[str, Any]:
        options = source_options or {}
        return _run_task(name, spec, None, [], options, full_refresh, isolate, None, 0.0)

    return task(**_task_options(name, {"name": task_name, **task_kwargs}))(body)


def make_pipeline_flow(
    pipeline: str | PipelineSpec,
    flow_name: str,
    *,
    full_refresh: bool = False,
    isolate: bool = True,
    description: str = "",
    **flow_kwargs: Any,
) -> Flow[..., dict[str, Any]]:
    """A flow with one parameter, the source's options, that runs the pipeline's task
    (`isolate` as in `make_pipeline_task`)."""
    name, _ = _declared(pipeline)
    pipeline_task = make_pipeline_task(pipeline, full_refresh=full_refresh, isolate=isolate)

    def run(source_options: dict[str, Any] | None = None) -> dict[str, Any]:
        get_run_logger().info("%s: pipeline %s, options %s", flow_name, name, source_options)
        return pipeline_task(source_options)

    run.__doc__ = f"Runs the {name} pipeline. {description}".strip()
    return flow(name=flow_name, **flow_kwargs)(run)
