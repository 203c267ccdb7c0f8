"""Running one task attempt, in this process or in a child process that never calls Prefect,
and what came of it: the run report, or an error whose `outcome` says how it ended
(flows/errors.py: failed, killed, config-error)."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections import deque
from typing import IO, Any

from flows.attempt.protocol import Relay
from flows.attempt.request import Attempt, new_workdir, run_attempt
from flows.attempt.start import start_attempt, start_method
from flows.errors import FAILED, KILLED, PipelineAttemptError, TerminalPipelineError
from flows.prefect.artifacts import ArtifactSink
from flows.system.resources import free_large_blocks_at_once, release_memory
from flows.system.workers import keep_heap_shared


def execute(attempt: Attempt) -> dict[str, Any]:
    """Runs one attempt in this process and returns the run report as a dict."""
    return run_attempt(attempt, ArtifactSink(attempt.target))


def execute_in_child(attempt: Attempt, log: Any) -> dict[str, Any]:
    """Runs one attempt in a child process that never calls Prefect (flows/attempt/).

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
            return _report_or_raise(attempt, code, relay, tail[-1] if tail else "-")
        finally:
            if proc.poll() is None:  # this process was interrupted: no orphan keeps the lease
                proc.kill()
                proc.wait()
            sink.close()
            # a killed child leaves its files: gigabytes of packages on the pod's disk
            shutil.rmtree(str(attempt.workdir), ignore_errors=True)


def _report_or_raise(attempt: Attempt, code: int, relay: Relay, last_line: str) -> dict[str, Any]:
    """The child's report, or the error its messages or its exit code say."""
    if code == 0 and relay.report is not None:
        return relay.report
    failure = relay.failure
    if failure:
        message = (
            f"pipeline {attempt.pipeline} attempt {attempt.attempt} failed: "
            f"{failure.get('type')}: {failure.get('message')}"
        )
        cause = str(failure.get("type") or "")
        if failure.get("terminal"):
            raise TerminalPipelineError(message, int(failure.get("exit_code", 1)), cause=cause)
        raise PipelineAttemptError(message, cause=cause)
    cause = (
        f"killed by signal {-code}" + (" (OOM kill?)" if code == -9 else "")
        if code < 0
        else f"exited with {code}"
    )
    error = PipelineAttemptError(
        f"pipeline {attempt.pipeline} attempt {attempt.attempt}: child process {cause}; "
        f"last output: {last_line}",
        outcome=KILLED if code < 0 else FAILED,
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
