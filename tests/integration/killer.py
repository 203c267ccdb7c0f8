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

from flows import checkpoint
from flows.cli import main

POINT = sys.argv[1]
ROWS = int(os.environ.get("SOURCES__SYNTHETIC__ROWS", "0"))
_original_update = checkpoint.CheckpointCollector.update
_counts: dict[str, int] = {}


def _die() -> None:
    sys.stderr.write(f"killer: SIGKILL at {POINT}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def update(
    self: checkpoint.CheckpointCollector,
    name: str,
    inc: int = 1,
    total: Any = None,
    inc_total: Any = None,
    message: Any = None,
    label: Any = None,
) -> None:
    step = self.step
    if name == "Jobs" and label is None and step.startswith("Load"):
        if total is not None:
            _counts["jobs_total"] = total
        if inc_total:
            _counts["jobs_total"] = _counts.get("jobs_total", 0) + inc_total
        if inc > 0:
            _counts["jobs"] = _counts.get("jobs", 0) + inc
            if POINT == "load-first":
                _die()
    _original_update(self, name, inc, total, inc_total, message, label)
    if POINT == "extract" and step.startswith("Extract") and name == "events":
        _counts["events"] = _counts.get("events", 0) + inc
        if _counts["events"] >= ROWS // 2:
            _die()
    if POINT == "normalize" and step.startswith("Normalize") and name not in ("Files",) and inc:
        _die()
    if (
        POINT == "load-last"
        and _counts.get("jobs", 0)
        and _counts["jobs"] >= _counts.get("jobs_total", 1 << 30)
    ):
        _die()


checkpoint.CheckpointCollector.update = update  # type: ignore[method-assign]
sys.exit(main(sys.argv[2:]))
