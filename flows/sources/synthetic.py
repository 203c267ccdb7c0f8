"""A generated, deterministic event stream: the hard case for exactly-once.

`events` is append-only with a unique integer `id` from 1 to `rows`, an `updated_at` cursor
(one second per id), a 50-character payload and a nested `tags` list (2 per event, so the
child table `events__tags` has 2 * rows rows). A resumed load that repeats a committed job
shows up as duplicate ids; one that drops a job shows up as missing ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.common.exceptions import TerminalValueError
from dlt.sources import DltResource

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def event(i: int) -> dict[str, Any]:
    """Row `i` of the stream; the same i always gives the same row."""
    return {
        "id": i,
        "updated_at": EPOCH + timedelta(seconds=i),
        "payload": f"{i:012d}-{(i * 2654435761) % 4294967296:010d}-".ljust(50, "x"),
        "tags": [f"t{i % 7}", f"u{i % 11}"],
    }


@dlt.source(name="synthetic")
def synthetic(rows: int = 10_000, batch_size: int = 5_000) -> DltResource:
    """`rows` comes from dlt config: SOURCES__SYNTHETIC__ROWS."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise TerminalValueError(f"synthetic: rows must be a non-negative integer, got {rows!r}")

    @dlt.resource(name="events", write_disposition="append", primary_key="id")
    def events(
        updated_at: dlt.sources.incremental[datetime] = dlt.sources.incremental(
            "updated_at", initial_value=EPOCH
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        # resume from the cursor instead of generating rows the incremental would drop
        cursor = updated_at.last_value or EPOCH
        start = int((cursor - EPOCH).total_seconds()) + 1
        for first in range(start, rows + 1, batch_size):
            yield [event(i) for i in range(first, min(first + batch_size, rows + 1))]

    return events
