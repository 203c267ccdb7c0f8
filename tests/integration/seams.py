"""The one test seam of the kill and pause harnesses (killer.py, pauser.py): hooks around the
shipped collector's `update`, and the load step's job counts read from it.

The harnesses wrap the platform's code from outside, so the code under test is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows import checkpoint

# (collector, name, inc, total, inc_total, label) -> None
Hook = Callable[[checkpoint.CheckpointCollector, str, int, Any, Any, Any], None]


@dataclass
class LoadJobs:
    """Completed and total load jobs, as the load step reports them to its collector."""

    done: int = 0
    total: int = 0

    def count(
        self,
        collector: checkpoint.CheckpointCollector,
        name: str,
        inc: int,
        total: Any,
        inc_total: Any,
        label: Any,
    ) -> bool:
        """Counts one update; True when it was the load step's `Jobs` counter."""
        if name != "Jobs" or label is not None or not collector.step.startswith("Load"):
            return False
        if total is not None:
            self.total = total
        self.total += inc_total or 0
        self.done += max(inc, 0)
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
        if before is not None:
            before(self, name, inc, total, inc_total, label)
        original(self, name, inc, total, inc_total, message, label)
        if after is not None:
            after(self, name, inc, total, inc_total, label)

    checkpoint.CheckpointCollector.update = update  # type: ignore[method-assign]
