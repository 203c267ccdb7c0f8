"""Runs the `flows` CLI and, at a chosen point of the load step, announces it and pauses.

    python pauser.py POINT MARKER SECONDS flows-args...

At POINT the harness writes MARKER (a file path) and blocks the load step's main loop for
SECONDS; jobs already running go on, the lease heartbeat goes on. The test does what it
wants meanwhile: start a second attempt, unlock the lease, stop the store. POINT is one of:

  load-start   load began, no job has completed yet
  load-mid     half of the load jobs completed
  load-commit  every job completed; dlt is about to record the package in `_dlt_loads`

Like killer.py it wraps the shipped code from outside: the code under test is unchanged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from dlt.load import Load

from flows import checkpoint
from flows.cli import main

POINT, MARKER, SECONDS = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
_original_update = checkpoint.CheckpointCollector.update
_original_complete = Load.complete_package
_jobs = {"done": 0, "total": 0}
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


def update(
    self: checkpoint.CheckpointCollector,
    name: str,
    inc: int = 1,
    total: Any = None,
    inc_total: Any = None,
    message: Any = None,
    label: Any = None,
) -> None:
    _original_update(self, name, inc, total, inc_total, message, label)
    if name != "Jobs" or not self.step.startswith("Load") or label is not None:
        return
    if total is not None:
        _jobs["total"] = total
    _jobs["total"] += inc_total or 0
    _jobs["done"] += max(inc, 0)
    if POINT == "load-start" and _jobs["total"]:
        _pause()
    if POINT == "load-mid" and _jobs["total"] and _jobs["done"] * 2 >= _jobs["total"]:
        _pause()


def complete_package(self: Load, *args: Any, **kwargs: Any) -> Any:
    if POINT == "load-commit":
        _pause()
    return _original_complete(self, *args, **kwargs)


checkpoint.CheckpointCollector.update = update  # type: ignore[method-assign,assignment]
Load.complete_package = complete_package  # type: ignore[method-assign]
sys.exit(main(sys.argv[4:]))
