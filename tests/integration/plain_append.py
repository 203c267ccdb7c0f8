"""An append resource with no incremental cursor: the hard case for exactly-once.

Every run yields the same `rows` events (ids 1..rows, with a nested `tags` list), so only the
platform's resume keeps a rerun from loading them twice. `rows` comes from dlt config:
SOURCES__PLAIN__ROWS.

    flows run tests.integration.plain_append:plain --name plain --dataset synthetic
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from flows.sources.synthetic import event


@dlt.source(name="plain", section="plain")
def plain(rows: int = 10_000, batch_size: int = 5_000) -> DltResource:
    @dlt.resource(name="events", write_disposition="append")
    def events() -> Iterator[list[dict[str, Any]]]:
        for first in range(1, rows + 1, batch_size):
            yield [event(i) for i in range(first, min(first + batch_size, rows + 1))]

    return events
