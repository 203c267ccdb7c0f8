"""`@dlt_task` and the task/flow factories: a pipeline becomes a Prefect task in a few lines.

    @dlt_task(pipeline="products")
    def products_incremental(table: str = "products") -> DltSource:
        return products(table=table)

The decorated function only builds the source. The task takes the pipeline's lease,
restores its state, runs it with the runner and the PrefectCollector, and releases.
By default each attempt runs in a child process with an empty working dir, exactly like
a fresh pod: when that process dies (OOM kill, kill -9), Prefect retries the task with
backoff and jitter and the new attempt resumes from the state store.
"""

from __future__ import annotations

import importlib
import inspect
import os
import resource
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import cloudpickle
from prefect import Flow, Task, flow, get_run_logger, task
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from flows.errors import RetryableError, TerminalError, is_terminal
from flows.pipelines import PipelineSpec, get_spec
from flows.prefect.artifacts import ArtifactSink
from flows.prefect.attempt import Attempt, run_attempt
from flows.prefect.collector import PrefectCollector
from flows.prefect.protocol import Relay
from flows.prefect.records import RunRecord, requests_from_env, write_record
from flows.resources import Usage, container_limits, current_usage, release_memory


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


@dataclass(frozen=True)
class RunRequest:
    """Everything an attempt needs; crosses the process boundary pickled."""

    pipeline: str
    # what returns the dlt source: None for the pipeline's registered source, "module:name"
    # for an importable function, else the function itself, pickled by value (a flow file
    # that Prefect loaded from a path is not importable by its module name)
    source: Callable[..., Any] | str | None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    state_url: str | None = None
    lease_wait: float = 0.0
    flow_run_id: str | None = None
    task_run_id: str | None = None
    attempt: int = 1


def source_reference(fn: Callable[..., Any]) -> Callable[..., Any] | str:
    """ "module:qualname" when that import finds `fn` again, else `fn` itself."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    try:
        obj: Any = importlib.import_module(module or "")
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return fn
    return f"{module}:{qualname}" if obj is fn else fn


def resolve_source(request: RunRequest) -> Callable[..., Any]:
    if request.source is None:
        return get_spec(request.pipeline).source
    if isinstance(request.source, str):
        module, _, qualname = request.source.partition(":")
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    return request.source


def attempt_of(request: RunRequest) -> Attempt:
    """The attempt a request asks for, with its source resolved here."""
    return Attempt(
        pipeline=request.pipeline,
        source=source_reference(resolve_source(request)),
        args=tuple(request.args),
        kwargs=dict(request.kwargs),
        full_refresh=request.full_refresh,
        state_url=request.state_url,
        lease_wait=request.lease_wait,
        flow_run_id=request.flow_run_id,
        task_run_id=request.task_run_id,
        attempt=request.attempt,
    )


def execute(request: RunRequest) -> dict[str, Any]:
    """Runs one attempt in this process and returns the run report as a dict."""
    attempt = attempt_of(request)
    return run_attempt(attempt, ArtifactSink(attempt.target))


def execute_in_child(request: RunRequest, log: Any) -> dict[str, Any]:
    """Runs one attempt in a child process that never imports prefect.

    The child sends its artifacts and its outcome as messages (flows.prefect.protocol); this
    process writes them to the API and streams the child's log lines to the task logger.
    """
    attempt = attempt_of(request)
    sink = ArtifactSink(attempt.target)
    relay = Relay(sink)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.prefect.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    tail: deque[str] = deque(maxlen=40)
    logs = threading.Thread(
        target=_forward_logs, args=(proc.stderr, log, tail), name="flows-child-log", daemon=True
    )
    logs.start()
    try:
        # pickled: task arguments may be dates, decimals, ... (same code on both sides)
        proc.stdin.write(cloudpickle.dumps(attempt))
        proc.stdin.close()
        release_memory()  # the pod holds both processes: this one only relays from now on
        for raw in proc.stdout:
            relay.handle(raw.decode())
        code = proc.wait()
        logs.join(timeout=30)
        if code == 0 and relay.report is not None:
            return relay.report
        failure = relay.failure
        if failure:
            message = (
                f"pipeline {request.pipeline} attempt {request.attempt} failed: "
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
            f"pipeline {request.pipeline} attempt {request.attempt}: child process {cause}; "
            f"last output: {tail[-1] if tail else '-'}"
        )
        if code < 0:  # the child could not report its own death
            PrefectCollector(
                attempt.target, pipeline_name=request.pipeline, sink=sink
            ).on_attempt_failed("run", request.attempt, error)
        raise error
    finally:
        if proc.poll() is None:  # this process was interrupted: no orphan keeps the lease
            proc.kill()
            proc.wait()
        sink.close()


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


def _run_task(
    pipeline: str,
    source: Callable[..., Any] | str | None,
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    full_refresh: bool,
    isolate: bool,
    state_url: str | None,
    lease_wait: float,
) -> dict[str, Any]:
    log = get_run_logger()
    ctx = TaskRunContext.get()
    assert ctx is not None, "a dlt task runs inside a Prefect task run"
    request = RunRequest(
        pipeline=pipeline,
        source=source,
        args=list(args),
        kwargs=dict(kwargs),
        full_refresh=full_refresh,
        state_url=state_url,
        lease_wait=lease_wait,
        flow_run_id=str(ctx.task_run.flow_run_id),
        task_run_id=str(ctx.task_run.id),
        attempt=ctx.task_run.run_count,
    )
    log.info("running pipeline %s (attempt %d)", pipeline, request.attempt)
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
    finally:
        record = _record(request, report, outcome, before, time.perf_counter() - started, isolate)
        record.cpu_throttled_seconds -= throttled_before
        for warning in record.warnings():
            log.warning("%s: %s", pipeline, warning)
        try:
            write_record(record, ctx.task_run.flow_run_id, ctx.task_run.id)
        except Exception as err:  # a record must never fail the run
            log.warning("could not write the run record: %s", err)
    result = summary(report, request.attempt)
    log.info("pipeline %s done: %s", pipeline, result)
    return result


def _usage_of_children() -> Usage:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Usage(children.ru_utime + children.ru_stime, children.ru_maxrss * 1024, 0, 0.0)


def _record(
    request: RunRequest,
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
    pipeline: str,
    full_refresh: bool = False,
    isolate: bool = True,
    state_url: str | None = None,
    lease_wait: float = 0.0,
    **task_kwargs: Any,
) -> Any:
    """Decorates a module-level function that returns a dlt source for pipeline `pipeline`.

    Defaults: retries=3, exponential backoff (factor 10) with jitter 0.5, tags ["dlt",
    pipeline]; any `prefect.task` option overrides them. `isolate=False` runs attempts in
    the task's own process (debugging; a killed process is then not retried).
    """

    def decorate(source_fn: Callable[..., Any]) -> Task[..., dict[str, Any]]:
        source = source_reference(source_fn)

        def body(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return _run_task(
                pipeline, source, args, kwargs, full_refresh, isolate, state_url, lease_wait
            )

        body.__name__ = source_fn.__name__
        body.__doc__ = source_fn.__doc__
        body.__signature__ = inspect.signature(source_fn)  # type: ignore[attr-defined]
        return task(**_task_options(pipeline, task_kwargs))(body)

    return decorate(fn) if fn is not None else decorate


def make_pipeline_task(
    pipeline: str | PipelineSpec,
    *,
    full_refresh: bool = False,
    isolate: bool = True,
    **task_kwargs: Any,
) -> Task[..., dict[str, Any]]:
    """A task that runs a registered pipeline; its parameters are the source's options."""
    spec = get_spec(pipeline) if isinstance(pipeline, str) else pipeline
    name = f"{spec.name}-full-refresh" if full_refresh else spec.name

    def body(source_options: dict[str, Any] | None = None) -> dict[str, Any]:
        return _run_task(
            spec.name, None, [], source_options or {}, full_refresh, isolate, None, 0.0
        )

    return task(**_task_options(spec.name, {"name": name, **task_kwargs}))(body)


def make_pipeline_flow(
    pipeline: str | PipelineSpec,
    flow_name: str,
    *,
    full_refresh: bool = False,
    **flow_kwargs: Any,
) -> Flow[..., dict[str, Any]]:
    """A flow with one parameter, the source's options, that runs the pipeline's task."""
    spec = get_spec(pipeline) if isinstance(pipeline, str) else pipeline
    pipeline_task = make_pipeline_task(spec, full_refresh=full_refresh)

    def run(source_options: dict[str, Any] | None = None) -> dict[str, Any]:
        get_run_logger().info("%s: pipeline %s, options %s", flow_name, spec.name, source_options)
        return pipeline_task(source_options)

    run.__doc__ = f"Runs the {spec.name} pipeline ({spec.description})."
    return flow(name=flow_name, **flow_kwargs)(run)
