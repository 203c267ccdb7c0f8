"""Runs the `flows` CLI and SIGKILLs its own process at a chosen point of a pipeline step.

    python killer.py POINT flows-args...

POINT is one of:
  extract      after half of the `events` rows were extracted
  normalize    after normalize wrote its first items
  load-first   as soon as the first load job completed, before its snapshot
  load-last    after the last load job completed and was snapshotted, before `_dlt_loads`

This is the only test seam: it wraps the platform's collector from outside, so the code under
test is the shipped code. SIGKILL gives the process no chance to clean up, like a lost pod.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from seams import LoadJobs, wrap_update  # beside this script

from flows import checkpoint
from flows.cli import main

POINT = sys.argv[1]
ROWS = int(os.environ.get("SOURCES__SYNTHETIC__ROWS", "0"))
jobs = LoadJobs()
extracted = {"events": 0}


def _die() -> None:
    sys.stderr.write(f"killer: SIGKILL at {POINT}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def before(
    collector: checkpoint.CheckpointCollector,
    name: str,
    inc: int,
    total: Any,
    inc_total: Any,
    label: Any,
) -> None:
    counted = jobs.count(collector, name, inc, total, inc_total, label)
    if counted and inc > 0 and POINT == "load-first":  # a job completed, not yet snapshotted
        _die()


def after(
    collector: checkpoint.CheckpointCollector,
    name: str,
    inc: int,
    total: Any,
    inc_total: Any,
    label: Any,
) -> None:
    step = collector.step
    if POINT == "extract" and step.startswith("Extract") and name == "events":
        extracted["events"] += inc
        if extracted["events"] >= ROWS // 2:
            _die()
    if POINT == "normalize" and step.startswith("Normalize") and name not in ("Files",) and inc:
        _die()
    if POINT == "load-last" and jobs.done and jobs.all_done:
        _die()


wrap_update(before, after)
sys.exit(main(sys.argv[2:]))
