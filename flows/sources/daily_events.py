"""A date-partitioned source: a fixed set of events per day, for backfills over date ranges.

Rows are keyed by (day, seq) and merged, so loading a day twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import dlt
from dlt.sources import DltResource


def day_rows(day: date, rows_per_day: int) -> list[dict[str, Any]]:
    ordinal = day.toordinal()
    return [
        {"day": day, "seq": n, "amount": (ordinal * 31 + n * 17) % 1000 / 10, "kind": f"k{n % 5}"}
        for n in range(rows_per_day)
    ]


@dlt.source(name="daily_events")
def daily_events(
    start_date: date = dlt.config.value,
    end_date: date = dlt.config.value,
    rows_per_day: int = 100,
) -> DltResource:
    """Days from start_date to end_date inclusive; bad ranges fail before anything runs."""
    if end_date < start_date:
        raise ValueError(f"end_date {end_date} is before start_date {start_date}")

    @dlt.resource(name="daily_events", primary_key=("day", "seq"), write_disposition="merge")
    def events() -> Iterator[list[dict[str, Any]]]:
        day = start_date
        while day <= end_date:
            yield day_rows(day, rows_per_day)
            day += timedelta(days=1)

    return events
