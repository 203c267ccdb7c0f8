"""Runs the `flows` CLI and SIGKILLs its own process at a chosen point of a pipeline step.

    python killer.py POINT flows-args...

POINT is one of:
  extract      after half of the `events` rows were extracted
  normalize    after normalize wrote its first items
  load-first   as soon as the first load job completed, before its snapshot
  load-third   as soon as a third of the load jobs completed, before their snapshot
  load-last    after the last load job completed and was snapshotted, before `_dlt_loads`
  loaded       after the package is in `_dlt_loads`, before the snapshot after load
  load-60      as soon as 60% of the load jobs completed, before their snapshot
  segment-load      a checkpointed extract: once the second segment's first load job
                    completed, before its snapshot
  segment-snapshot  a checkpointed extract: during the snapshot after the first segment's
                    load, its blobs sent and its manifest not yet written

This is the only test seam: it wraps the platform's collector from outside, so the code under
test is the shipped code. SIGKILL gives the process no chance to clean up, like a lost pod.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from seams import LoadJobs, Update, before_step_snapshot, wrap_update  # beside this script

from flows.cli import main
from flows.state import session

POINT = sys.argv[1]
ROWS = int(os.environ.get("SOURCES__SYNTHETIC__ROWS", "0"))
jobs = LoadJobs()
extracted = {"events": 0}
loads_ended = [0]


def _die() -> None:
    sys.stderr.write(f"killer: SIGKILL at {POINT} ({jobs.done} of {jobs.total} load jobs)\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def before(update: Update) -> None:
    counted = jobs.count(update)
    if counted and update.inc > 0 and POINT == "load-first":  # committed, not yet snapshotted
        _die()
    if counted and update.inc > 0 and POINT == "load-third" and 3 * jobs.done >= jobs.total > 0:
        _die()
    if counted and update.inc > 0 and POINT == "load-60" and 5 * jobs.done >= 3 * jobs.total > 0:
        _die()
    if counted and update.inc > 0 and POINT == "segment-load" and loads_ended[0] >= 1:
        _die()


def after(update: Update) -> None:
    step, name = update.step, update.name
    if POINT == "extract" and step.startswith("Extract") and name == "events":
        extracted["events"] += update.inc
        if extracted["events"] >= ROWS // 2:
            _die()
    if POINT == "normalize" and step.startswith("Normalize") and name != "Files" and update.inc:
        _die()
    if POINT == "load-last" and jobs.done and jobs.all_done:
        _die()


def step_ended(step: str) -> None:
    if POINT == "loaded" and step == "load":
        _die()
    loads_ended[0] += step == "load"


def publish_then_die(*args: Any, **kwargs: Any) -> int:
    """The snapshot after the first segment's load: its blobs go out, then the process dies
    where the manifest would be written."""
    if POINT == "segment-snapshot" and args[1].step == "load":
        layout, manifest, sources, known, staging = args[:5]
        return publish(layout, manifest, sources, known, staging, _die)
    return publish(*args, **kwargs)


publish = session.publish_snapshot
session.publish_snapshot = publish_then_die  # type: ignore[assignment]


wrap_update(before, after)
before_step_snapshot(step_ended)
sys.exit(main(sys.argv[2:]))
