"""The synthetic event stream (flows/sources/synthetic.py) as a source that qualifies for a
checkpointed extract: its cursor is declared ordered (`row_order="asc"`), and each batch
takes a little time, as a remote API's pages do, so a run of a few seconds has several
segments. `rows` and `pause` come from dlt config (SOURCES__ORDERED__ROWS, ...__PAUSE).

    flows run tests.integration.ordered_synthetic:ordered --name ordered --dataset synthetic \
        --checkpoint-every 1
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from flows.sources.synthetic import event


@dlt.source(name="ordered", section="ordered")
def ordered(rows: int = 10_000, batch_size: int = 1_000, pause: float = 0.1) -> DltResource:
    @dlt.resource(name="events", write_disposition="append", primary_key="id")
    def events(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental(
            "id", initial_value=0, row_order="asc"
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        for first in range(cursor.last_value + 1, rows + 1, batch_size):
            time.sleep(pause)
            yield [event(i) for i in range(first, min(first + batch_size, rows + 1))]

    return events
