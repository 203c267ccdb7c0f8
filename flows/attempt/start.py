"""Starting an isolated attempt's process: spawned, or forked from an engine that holds dlt.

Either way the child runs `flows.attempt.child`: protocol messages on one pipe, everything
else it writes (fd 1 and 2) on another, and it never calls Prefect. The difference is memory
and time:

- **spawn** (the default): a fresh `python -m flows.attempt.child` reads the pickled attempt
  on its stdin, imports dlt and the source, and holds nothing of the engine's. The engine of
  a declared pipeline's flow never imports dlt (flows/errors.py), so a forked child would
  share only Prefect's heap, which it never uses. Measured with `python -m tests.benchmarks
  --suites prefect` (1,000,000 synthetic rows, 2 CPUs, the pod's command, 2026-12-05): the
  pod's cgroup peak went from 493 MiB, the attempt forked from an engine that held dlt, to
  478 MiB (plain `pipeline.run()`: 380 and 389 in those runs).
- **fork** (Linux, once the engine has imported dlt: a flow module that imports it, a
  fan-out part that resolved its declaration): the child starts with the engine's memory,
  dlt included, shared page by page, and in milliseconds instead of importing dlt again. It
  drops what belongs to the engine: its signal handlers, its log handlers (Prefect's API
  log handler among them), its stdout; Prefect resets its own services after a fork. Not
  on other systems, where forking a process with threads is not safe, and not once the
  engine used the S3 state store itself, whose HTTP runtime a forked child cannot use.

Both kinds die with the engine (PR_SET_PDEATHSIG): a killed engine leaves no attempt behind
that holds the lease.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from typing import IO, Protocol

import cloudpickle

from flows.attempt.child import run_forked
from flows.attempt.protocol import PARENT_PID
from flows.attempt.request import Attempt
from flows.system.workers import LINUX

_warm: tuple[subprocess.Popen[bytes], dict[str, str]] | None = None  # (child, its environ)
_warm_lock = threading.Lock()

_forking = threading.Lock()  # one fork at a time, so no child inherits another's pipes


class AttemptProcess(Protocol):
    """What the parent needs of the child; `subprocess.Popen` is one."""

    pid: int
    stdout: IO[bytes]  # protocol messages
    stderr: IO[bytes]  # the child's logs and prints

    def wait(self) -> int: ...

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...


class ForkedAttempt:
    """An attempt forked from this process, waited for like a `subprocess.Popen`."""

    def __init__(self, attempt: Attempt) -> None:

        with _forking:
            messages_r, messages_w = os.pipe()
            logs_r, logs_w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                for fd in (messages_r, messages_w, logs_r, logs_w):
                    os.close(fd)
                raise
            if pid == 0:  # the child: never returns into the engine's code
                code = 70
                try:
                    os.close(messages_r)
                    os.close(logs_r)
                    code = run_forked(attempt, messages_w, logs_w)
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)  # no atexit hooks, no finalizers of the engine's objects
            os.close(messages_w)  # the child's copies are the only ones: EOF when it ends
            os.close(logs_w)
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: IO[bytes] = os.fdopen(messages_r, "rb")
        self.stderr: IO[bytes] = os.fdopen(logs_r, "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


def start_method() -> str:
    """fork when this process holds dlt for the child to share and forking is safe: on
    Linux, before this process used the S3 state store (a task with `isolate=False`);
    else spawn."""
    s3 = sys.modules.get("flows.state.s3")
    if not LINUX or "dlt" not in sys.modules or (s3 is not None and s3.runtime_started()):
        return "spawn"
    return "fork"


def handover(attempt: Attempt) -> bytes:
    """What a spawned child reads on its stdin: this process's working directory (a JSON
    line: the child moves there before it unpickles anything), then the attempt, pickled
    (task arguments may be dates, decimals, ...; both sides run the same code)."""
    return json.dumps(os.getcwd()).encode() + b"\n" + cloudpickle.dumps(attempt)


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.attempt.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", PARENT_PID: str(os.getpid())},
    )


def prewarm() -> None:
    """Starts the first spawned attempt's interpreter now, before this process imports
    Prefect: the child imports dlt, the runner and what the default path imports next
    (flows/attempt/child.py) while the engine imports Prefect and sets the flow run up, on
    another CPU. The pod's engine calls it (flows/prefect/pod.py). The first
    `start_attempt` that spawns takes it if this process's environment is still the one it
    was started with (the working directory goes with the attempt); a child that gets no
    attempt within WARM_WAIT_SECONDS exits, and `discard_prewarmed` ends it sooner."""
    global _warm
    with _warm_lock:
        if _warm is None:
            _warm = (_spawn(), dict(os.environ))


def _take_warm() -> subprocess.Popen[bytes] | None:
    global _warm
    with _warm_lock:
        warm, _warm = _warm, None
    if warm is None:
        return None
    proc, environ = warm
    if proc.poll() is None and environ == dict(os.environ):
        return proc
    _end(proc)
    return None


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.communicate()


def discard_prewarmed() -> None:
    """Ends the prewarmed child now, in a flow that runs no attempt in its own process (a
    fan-out parent whose parts are flow runs of their own): it holds about 100 MiB while it
    waits (dlt, DuckDB, pyarrow)."""
    if (proc := _take_warm()) is not None:
        _end(proc)


def start_attempt(attempt: Attempt, method: str | None = None) -> AttemptProcess:
    """Starts the attempt's process; read its stdout to the end, then wait for it."""
    method = method or start_method()
    if method == "fork":
        return ForkedAttempt(attempt)
    if method != "spawn":
        raise ValueError(f"unknown start method {method!r}: fork or spawn")
    message = handover(attempt)
    for start in (_take_warm, _spawn):
        proc = start()
        if proc is None:
            continue
        assert proc.stdin is not None
        try:
            proc.stdin.write(message)
            proc.stdin.close()
        except BrokenPipeError:  # a warm child that stopped waiting just now
            proc.communicate()
            continue
        return proc  # type: ignore[return-value]
    raise RuntimeError("the attempt's process ended before it read the attempt")
