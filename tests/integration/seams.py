"""The one test seam of the kill and pause harnesses (killer.py, pauser.py): hooks around the
shipped collector's `update`, and the load step's job counts read from it.

The harnesses wrap the platform's code from outside, so the code under test is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows.durable import checkpoint


@dataclass(frozen=True)
class Update:
    """One call of the collector's `update`, as the hooks see it."""

    collector: checkpoint.CheckpointCollector
    name: str
    inc: int
    total: Any
    inc_total: Any
    label: Any

    @property
    def step(self) -> str:
        return str(self.collector.step)


Hook = Callable[[Update], None]


@dataclass
class LoadJobs:
    """Completed and total load jobs, as the load step reports them to its collector."""

    done: int = 0
    total: int = 0

    def count(self, update: Update) -> bool:
        """Counts one update; True when it was the load step's `Jobs` counter."""
        if update.name != "Jobs" or update.label is not None or not update.step.startswith("Load"):
            return False
        if update.total is not None:
            self.total = update.total
        self.total += update.inc_total or 0
        self.done += max(update.inc, 0)
        return True

    @property
    def all_done(self) -> bool:
        return bool(self.total) and self.done >= self.total


def wrap_update(before: Hook | None = None, after: Hook | None = None) -> None:
    """Runs `before` and `after` around every `CheckpointCollector.update` of this process."""
    original = checkpoint.CheckpointCollector.update

    def update(
        self: checkpoint.CheckpointCollector,
        name: str,
        inc: int = 1,
        total: Any = None,
        inc_total: Any = None,
        message: Any = None,
        label: Any = None,
    ) -> None:
        seen = Update(self, name, inc, total, inc_total, label)
        if before is not None:
            before(seen)
        original(self, name, inc, total, inc_total, message, label)
        if after is not None:
            after(seen)

    checkpoint.CheckpointCollector.update = update  # type: ignore[method-assign]


def before_step_snapshot(hook: Callable[[str], None]) -> None:
    """Runs `hook(step)` when a step has ended (its work committed: for load, the package is
    in `_dlt_loads`), before the collector snapshots it."""
    original = checkpoint.CheckpointCollector.on_end_trace_step

    def on_end_trace_step(self: checkpoint.CheckpointCollector, *args: Any) -> None:
        hook(str(args[1].step))
        original(self, *args)

    checkpoint.CheckpointCollector.on_end_trace_step = on_end_trace_step  # type: ignore[method-assign]
