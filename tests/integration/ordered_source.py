"""A dlt source over tests/integration/ordered_api.py that resumes from its cursor: both
resources read ascending ids after the incremental's last value (`row_order="asc"`), so
`checkpoint_every` applies. `items` appends, `accounts` merges on `id`.

    SOURCES__ORDERED__URL=http://127.0.0.1:PORT flows run \
        tests.integration.ordered_source:ordered --name ordered --checkpoint-every 2
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource


def _pages(url: str, path: str, after: int, page_size: int) -> Iterator[list[dict[str, Any]]]:
    while True:
        with urllib.request.urlopen(f"{url}{path}?after={after}&limit={page_size}") as reply:
            rows = json.load(reply)["rows"]
        if not rows:
            return
        yield rows
        after = rows[-1]["id"]


@dlt.source(name="ordered", section="ordered")
def ordered(url: str = dlt.config.value, page_size: int = 20) -> list[DltResource]:
    @dlt.resource(name="items", write_disposition="append")
    def items(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental(
            "id", initial_value=0, row_order="asc"
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        yield from _pages(url, "/items", cursor.last_value, page_size)

    @dlt.resource(name="accounts", write_disposition="merge", primary_key="id")
    def accounts(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental(
            "id", initial_value=0, row_order="asc"
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        yield from _pages(url, "/accounts", cursor.last_value, page_size)

    return [items, accounts]
