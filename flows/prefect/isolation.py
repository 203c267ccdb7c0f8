"""Starting an isolated attempt's process: forked from the engine on Linux, spawned elsewhere.

Either way the child runs `flows.prefect.child`: protocol messages on one pipe, everything
else it writes (fd 1 and 2) on another, and it never calls Prefect. The difference is memory
and time:

- **fork** (Linux): the child starts with the engine's memory, shared page by page, so the
  pod does not hold a second copy of Python, dlt and the flow's imports, and the child starts
  in milliseconds instead of importing them again. The child drops what belongs to the
  engine: its signal handlers, its log handlers (Prefect's API log handler among them), its
  stdout; Prefect resets its own services after a fork.
- **spawn** (macOS and other systems, where forking a process with threads is not safe, and
  an engine that used the S3 state store itself): a fresh `python -m flows.prefect.child`
  reads the pickled attempt on its stdin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
from typing import IO, Protocol

import cloudpickle

from flows.prefect.attempt import Attempt
from flows.workers import LINUX

START_METHOD = "fork" if LINUX else "spawn"
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
        from flows.prefect.child import run_forked

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
    """fork where it is safe: not on other systems, and not once this process has used the
    S3 state store (a task with `isolate=False` before), whose HTTP runtime a forked child
    cannot use."""
    from flows.state.s3 import runtime_started

    return "spawn" if runtime_started() else START_METHOD


def start_attempt(attempt: Attempt, method: str | None = None) -> AttemptProcess:
    """Starts the attempt's process; read its stdout to the end, then wait for it."""
    method = method or start_method()
    if method == "fork":
        return ForkedAttempt(attempt)
    if method != "spawn":
        raise ValueError(f"unknown start method {method!r}: fork or spawn")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.prefect.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    # pickled: task arguments may be dates, decimals, ... (same code on both sides)
    proc.stdin.write(cloudpickle.dumps(attempt))
    proc.stdin.close()
    return proc  # type: ignore[return-value]
