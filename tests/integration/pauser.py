"""Runs the `flows` CLI and, at a chosen point of the load step, announces it and pauses.

    python pauser.py POINT MARKER SECONDS flows-args...

At POINT the harness writes MARKER (a file path) and blocks the load step's main loop for
SECONDS; jobs already running go on, the lease heartbeat goes on. The test does what it
wants meanwhile: start a second attempt, unlock the lease, stop the store. POINT is one of:

  load-start   load began, no job has completed yet
  load-mid     half of the load jobs completed
  load-commit  every job completed; dlt is about to record the package in `_dlt_loads`
  freeze-commit  half of the load jobs completed; the next PostgreSQL transaction to commit
               (a load job's rows, its fence check passed) freezes the whole process with
               SIGSTOP just before its COMMIT (SECONDS is ignored: the test sends SIGCONT)

Like killer.py it wraps the shipped code from outside: the code under test is unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient
from dlt.load import Load
from seams import LoadJobs, Update, wrap_update  # beside this script

from flows.cli import main

POINT, MARKER, SECONDS = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
_original_complete = Load.complete_package
_original_commit = Psycopg2SqlClient.commit_transaction
jobs = LoadJobs()
_paused = False


def _pause() -> None:
    global _paused
    if _paused:
        return
    _paused = True
    MARKER.write_text(POINT)
    sys.stderr.write(f"pauser: paused at {POINT} for {SECONDS} s\n")
    sys.stderr.flush()
    time.sleep(SECONDS)


_freeze_next_commit = False


def after(update: Update) -> None:
    global _freeze_next_commit
    if not jobs.count(update):
        return
    if POINT == "freeze-commit" and jobs.total and jobs.done * 2 >= jobs.total:
        _freeze_next_commit = True
    if POINT == "load-start" and jobs.total:
        _pause()
    if POINT == "load-mid" and jobs.total and jobs.done * 2 >= jobs.total:
        _pause()


def complete_package(self: Load, *args: Any, **kwargs: Any) -> Any:
    if POINT == "load-commit":
        _pause()
    return _original_complete(self, *args, **kwargs)


def commit_transaction(self: Psycopg2SqlClient) -> None:
    global _freeze_next_commit
    if _freeze_next_commit:
        _freeze_next_commit = False
        MARKER.write_text(POINT)
        sys.stderr.write("pauser: frozen before a commit\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)  # every thread stops, the heartbeat too
    _original_commit(self)


wrap_update(after=after)
Load.complete_package = complete_package  # type: ignore[method-assign]
# wrapped before the platform wraps it: its fence check runs first, then the freeze
Psycopg2SqlClient.commit_transaction = commit_transaction  # type: ignore[method-assign]
sys.exit(main(sys.argv[4:]))
