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

import dataclasses
import functools
import importlib
import inspect
import os
import resource
import shutil
import site
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import cloudpickle
from prefect import Flow, Task, flow, get_run_logger, task
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from flows.attempt.protocol import Relay
from flows.attempt.request import Attempt, new_workdir, run_attempt
from flows.attempt.start import start_attempt, start_method
from flows.errors import EXIT_CONFIG, RetryableError, TerminalError, exit_code_for, is_terminal
from flows.pipelines import PipelineSpec
from flows.prefect.artifacts import ArtifactSink
from flows.prefect.records import write_record
from flows.prefect.reruns import before_attempt
from flows.progress.records import CONFIG_ERROR, RunRecord, requests_from_env
from flows.system.quantities import check_pod_resources
from flows.system.resources import (
    Usage,
    container_limits,
    current_usage,
    free_large_blocks_at_once,
    release_memory,
)
from flows.system.workers import keep_heap_shared


class PipelineAttemptError(RetryableError):
    """An attempt failed in a way another attempt may not (network, lost pod, lease held)."""


class TerminalPipelineError(TerminalError):
    """An attempt failed in a way no retry can fix (bad config or credentials, contract
    violation, corrupt snapshot): Prefect does not retry it."""

    def __init__(self, message: str, exit_code: int = TerminalError.exit_code) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def should_retry(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: everything but terminal errors (flows/errors.py)."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as err:  # the result itself could not be read
        error = err
    return not (isinstance(error, BaseException) and is_terminal(error))


def source_reference(fn: Callable[..., Any]) -> Callable[..., Any] | str:
    """ "module:qualname" when a fresh interpreter in this directory imports `fn` by that
    name, else `fn` itself, pickled by value (a flow file Prefect loaded from a path)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    found: Any = None
    if module and _importable_in_child(module):
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError, ValueError):
            found = None
    if found is fn:
        return f"{module}:{qualname}"
    if module in sys.modules and module not in ("__main__", "__mp_main__"):
        cloudpickle.register_pickle_by_value(sys.modules[module])
    return fn


def _importable_in_child(module: str) -> bool:
    """The child imports `module` by name from: the working directory (`python -m` puts it
    first) under that dotted name, PYTHONPATH, site-packages, or an installed distribution
    (editable ones included). Not from folders a loader added at run time (Prefect adds a
    flow file's folder when it loads the file by path)."""
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None)
    if loaded is None or origin is None or module.startswith("__"):
        return False  # __main__, or Prefect's loader name for a flow file loaded by path
    path = Path(os.path.abspath(origin))
    if module.partition(".")[0] in _distributed_packages():
        return True
    roots = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    for root in [Path(os.path.abspath(r)) for r in roots if r]:
        if path.is_relative_to(root):
            dotted = ".".join(path.relative_to(root).with_suffix("").parts)
            if dotted in (module, f"{module}.__init__"):
                return True
    return any(path.is_relative_to(p) for p in map(Path, site.getsitepackages()))


@functools.cache
def _distributed_packages() -> frozenset[str]:
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions())


def execute(attempt: Attempt) -> dict[str, Any]:
    """Runs one attempt in this process and returns the run report as a dict."""
    return run_attempt(attempt, ArtifactSink(attempt.target))


def execute_in_child(attempt: Attempt, log: Any) -> dict[str, Any]:
    """Runs one attempt in a child process that never calls Prefect (isolation.py).

    The child sends its artifacts and its outcome as messages (flows.attempt.protocol); this
    process writes them to the API and streams the child's log lines to the task logger.
    """
    sink = ArtifactSink(attempt.target)
    relay = Relay(sink)
    tail: deque[str] = deque(maxlen=40)
    attempt = dataclasses.replace(attempt, workdir=new_workdir(attempt.pipeline))
    free_large_blocks_at_once()
    method = start_method()
    # what this process frees leaves the pod: before a fork (the child would otherwise share
    # it, and copy what it touches), else while the spawned child starts (a full collection
    # of Prefect's heap, about 50 ms off the task's time)
    if method == "fork":
        release_memory()
    with keep_heap_shared():
        proc = start_attempt(attempt, method)
        if method == "spawn":
            release_memory()
        logs = threading.Thread(
            target=_forward_logs, args=(proc.stderr, log, tail), name="flows-child-log", daemon=True
        )
        logs.start()
        try:
            for raw in proc.stdout:
                relay.handle(raw.decode())
            code = proc.wait()
            logs.join(timeout=30)
            return _outcome(attempt, code, relay, tail[-1] if tail else "-")
        finally:
            if proc.poll() is None:  # this process was interrupted: no orphan keeps the lease
                proc.kill()
                proc.wait()
            sink.close()
            # a killed child leaves its files: gigabytes of packages on the pod's disk
            shutil.rmtree(str(attempt.workdir), ignore_errors=True)


def _outcome(attempt: Attempt, code: int, relay: Relay, last_line: str) -> dict[str, Any]:
    """The child's report, or the error its messages or its exit code say."""
    if code == 0 and relay.report is not None:
        return relay.report
    failure = relay.failure
    if failure:
        message = (
            f"pipeline {attempt.pipeline} attempt {attempt.attempt} failed: "
            f"{failure.get('type')}: {failure.get('message')}"
        )
        if failure.get("terminal"):
            raise TerminalPipelineError(message, int(failure.get("exit_code", 1)))
        raise PipelineAttemptError(message)
    cause = (
        f"killed by signal {-code}" + (" (OOM kill?)" if code == -9 else "")
        if code < 0
        else f"exited with {code}"
    )
    error = PipelineAttemptError(
        f"pipeline {attempt.pipeline} attempt {attempt.attempt}: child process {cause}; "
        f"last output: {last_line}"
    )
    if code < 0:  # the child could not report its own death
        from flows.prefect.collector import PrefectCollector  # imports dlt: only on this path

        PrefectCollector(
            attempt.target, pipeline_name=attempt.pipeline, sink=relay.sink
        ).on_attempt_failed("run", attempt.attempt, error)
    raise error


def _forward_logs(stream: IO[bytes], log: Any, tail: deque[str]) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        log.info(line)


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
        run_key=f"{ctx.task_run.flow_run_id}/{ctx.task_run.task_key}/{ctx.task_run.dynamic_key}",
        attempt=ctx.task_run.run_count,
    )
    from prefect.runtime import flow_run

    before_attempt(ctx.task_run.flow_run_id, flow_run.run_count, log)
    log.info("running pipeline %s (attempt %d)", name, request.attempt)
    before = _usage_of_children() if isolate else current_usage()
    throttled_before = container_limits().cpu_throttled_seconds
    started = time.perf_counter()
    report: dict[str, Any] | None = None
    outcome = "failed"
    try:
        report = execute_in_child(request, log) if isolate else execute(request)
        outcome = "completed"
    except PipelineAttemptError as err:
        outcome = "killed" if "killed by signal" in str(err) else "failed"
        raise
    except Exception as err:
        outcome = CONFIG_ERROR if exit_code_for(err) == EXIT_CONFIG else "failed"
        raise
    finally:
        record = _record(request, report, outcome, before, time.perf_counter() - started, isolate)
        record.cpu_throttled_seconds -= throttled_before
        for warning in record.warnings():
            log.warning("%s: %s", name, warning)
        try:
            write_record(record, ctx.task_run.flow_run_id, ctx.task_run.id)
        except Exception as err:  # a record must never fail the run
            log.warning("could not write the run record: %s", err)
    result = summary(report, request.attempt)
    log.info("pipeline %s done: %s", name, result)
    return result


def _usage_of_children() -> Usage:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Usage(children.ru_utime + children.ru_stime, children.ru_maxrss * 1024, 0, 0.0)


def _record(
    request: Attempt,
    report: Mapping[str, Any] | None,
    outcome: str,
    before: Usage,
    wall: float,
    isolate: bool,
) -> RunRecord:
    """The attempt's resource record: the child's CPU and peak RSS, the container's limits."""
    from prefect.runtime import deployment, flow_run

    after = _usage_of_children() if isolate else current_usage()
    limits = container_limits()
    cpu_request, memory_request = requests_from_env()
    rows = report["loaded_rows"] if report else {}
    return RunRecord(
        deployment=deployment.name or flow_run.flow_name or request.pipeline,
        pipeline=request.pipeline,
        flow_run_id=request.flow_run_id or "",
        attempt=request.attempt,
        outcome=outcome,
        wall_seconds=round(wall, 3),
        cpu_seconds=round(after.cpu_seconds - before.cpu_seconds, 3),
        peak_rss_bytes=after.peak_rss_bytes,
        rows=sum(n for t, n in rows.items() if not t.startswith("_dlt")),
        step_seconds={s["step"]: round(s["seconds"], 3) for s in (report or {}).get("steps", [])},
        cpu_limit=limits.cpu_limit,
        memory_limit=limits.memory_limit,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_throttled_seconds=limits.cpu_throttled_seconds,
    )


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
