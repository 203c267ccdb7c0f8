"""How often a deployment is expected to succeed, read from its schedules: the freshness
alert compares the time since its last successful run with this interval."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from croniter import croniter


def expected_interval(schedules: list[Any], now: datetime | None = None) -> float | None:
    """The shortest gap, in seconds, between runs of the deployment's active schedules (for
    a cron, the longest gap over its next runs, so "every weekday" expects three days over a
    weekend); None for a deployment without an active cron or interval schedule."""
    gaps = [g for s in schedules if getattr(s, "active", True) for g in [_gap(s.schedule, now)]]
    found = [g for g in gaps if g is not None]
    return min(found) if found else None


def _gap(schedule: Any, now: datetime | None) -> float | None:
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        return float(interval.total_seconds())
    cron = getattr(schedule, "cron", None)
    if cron is None:
        return None  # an rrule: no freshness figure
    times = croniter(cron, now or datetime.now(UTC))
    runs = [times.get_next(float) for _ in range(8)]
    return max(b - a for a, b in pairwise(runs))
