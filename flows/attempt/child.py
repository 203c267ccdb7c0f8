"""The isolated attempt's process: runs the pipeline and reports to the parent in messages.

Started by flows/attempt/start.py: forked from the engine (`run_forked`) or spawned as
`python -m flows.attempt.child < handover` (`main`: the engine's working directory, then the
attempt pickled, on stdin; parent and child run the same code; a prewarmed child is spawned
before the engine knows its attempt). Its channel carries only protocol messages
(flows.attempt.protocol); everything else the process writes to its fd 1 and 2, a user's
`print` included, goes to the log stream, which the parent forwards to the task's logger.
Never calls Prefect: a spawned child does not even import it. Exits like the `flows` CLI
(`exit_now`: no interpreter teardown).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import signal
import sys
from typing import IO

import cloudpickle

from flows.attempt.protocol import PARENT_PID, WARM_WAIT_SECONDS, MessageSink
from flows.attempt.request import Attempt, run_attempt
from flows.errors import exit_code_for, first_platform_error, is_terminal, root_cause
from flows.system.exits import exit_now
from flows.system.workers import die_with_parent, set_process_name

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# What an attempt on the platform's default path imports after it starts, none of which
# reads config or the working directory: a prewarmed child imports them while it waits.
# About 0.26 s off the task's time, measured here; they take the waiting child from about
# 45 to 104 MiB (USS), most of which a pipeline that loads neither DuckDB nor Parquet would
# not otherwise hold.
WARM_IMPORTS = (
    "dlt.sources.helpers.requests",  # dlt's runtime set-up, on every run
    "dlt.common.libs.sql_alchemy_compat",  # parses any connection-string credentials
    "duckdb",  # the embedded default destination
    "pyarrow.parquet",  # the loader file format for DuckDB and filesystem (flows.config.settings)
)


def serve(attempt: Attempt, channel: IO[str]) -> int:
    """Runs the attempt, sends its artifacts and outcome on `channel`; the exit code."""
    sink = MessageSink(channel)
    try:
        report = run_attempt(attempt, sink)
    except Exception as err:
        cause = first_platform_error(err) or root_cause(err)
        print(f"error: {type(cause).__name__}: {cause}", flush=True)
        sink.send(
            "error",
            type=type(cause).__name__,
            message=str(cause).strip()[:2000],
            terminal=is_terminal(err),
            exit_code=exit_code_for(err),
        )
        return exit_code_for(err)
    sink.send("report", report=report)
    return 0


def run_forked(attempt: Attempt, channel_fd: int, log_fd: int) -> int:
    """The forked child: what belongs to the engine goes, then the attempt runs; the exit
    code (the caller exits without running the engine's exit hooks)."""
    set_process_name("flows-attempt")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the engine's handlers reschedule runs
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(os.devnull, "rb") as nothing:
        os.dup2(nothing.fileno(), 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    # the process's streams for its whole life: never closed
    sys.stdout = sys.stderr = open(2, "w", 1, "utf-8", "replace", closefd=False)  # noqa: SIM115
    _log_to_stderr()
    with os.fdopen(channel_fd, "w", encoding="utf-8") as channel:
        code = serve(attempt, channel)
    sys.stderr.flush()
    return code


def _log_to_stderr() -> None:
    """Inherited handlers would reach for the engine's threads and client (Prefect's API log
    handler) or its console: every logger reports through the root logger to stderr."""
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate = True
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT, force=True)


def main() -> int:
    """The spawned child: imports what every attempt runs (dlt, the runner) before it reads
    the attempt, which a prewarmed child receives only when the engine's task starts."""
    if parent := os.environ.pop(PARENT_PID, ""):
        die_with_parent(int(parent))
    set_process_name("flows-attempt")
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)
    import flows.durable.run  # noqa: F401  # dlt and the runner: resolves no config, reads no cwd

    if not _readable(sys.stdin, 0):  # prewarmed: the attempt is not there yet
        for module in WARM_IMPORTS:
            importlib.import_module(module)
    if not _readable(sys.stdin, WARM_WAIT_SECONDS):
        return 0  # prewarmed for a flow that ran no attempt in time
    if not (cwd := sys.stdin.buffer.readline()):
        return 0  # the engine closed its end without an attempt
    _move_to(json.loads(cwd))
    attempt: Attempt = cloudpickle.loads(sys.stdin.buffer.read())
    return serve(attempt, channel)


def _readable(stream: IO[str], timeout: float) -> bool:
    return bool(select.select([stream], [], [], timeout)[0])


def _move_to(cwd: str) -> None:
    """The engine's working directory (a deployment's pull step may have changed it since
    this process started), also as the first import path, as `python -m` set it."""
    started = os.getcwd()
    if cwd != started:
        os.chdir(cwd)
        sys.path[:] = [cwd if entry == started else entry for entry in sys.path]


if __name__ == "__main__":
    # without the interpreter's teardown: 0.25-0.3 s between the report and the child's
    # exit, measured here after 300,000 synthetic rows, all of it on the task's time
    exit_now(main())
