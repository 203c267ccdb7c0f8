"""dlt sources the fan-out tests declare as pipelines (env `PIPELINES__<NAME>__SOURCE`).

Plain dlt, as a user writes them: a backfillable API source (start_date, end_date), a
`sql_database` source merged on its tables' primary keys, and a source whose two resources
load one table with different new columns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import dlt
import requests
from dlt.sources import DltResource, DltSource


def _api() -> str:
    return os.environ["FANOUT_API_URL"]


@dlt.source(name="paged_events")
def paged_events(start_date: date, end_date: date) -> DltResource:
    """Days start_date..end_date of the paged API, merged on id and incremental on it: a
    rerun changes nothing, and a resumed part extracts nothing it already has."""

    @dlt.resource(name="events", primary_key="id", write_disposition="merge")
    def events(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental("id"),
    ) -> Iterator[list[dict[str, Any]]]:
        day = start_date
        while day <= end_date:
            page: int | None = 1
            while page:
                body = requests.get(
                    f"{_api()}/events", params={"day": day.isoformat(), "page": page}, timeout=60
                ).json()
                yield body["rows"]
                page = body["next"]
            day += timedelta(days=1)

    return events


def shop_tables() -> DltSource:
    """Every table of schema `fanout_src` in the shop database, merged on primary keys."""
    from dlt.sources.sql_database import sql_database

    source = sql_database(os.environ["FANOUT_SHOP_DSN"], schema="fanout_src")
    for resource in source.resources.values():
        resource.apply_hints(write_disposition="merge")
    return source


@dlt.source(name="two_writers")
def two_writers(rows: int = 500, wait: float = 2.0) -> list[DltResource]:
    """`left` and `right` both load table `wide`, each adding a column of its own."""

    def writer(name: str, first: int) -> DltResource:
        @dlt.resource(name=name, table_name="wide", write_disposition="append")
        def rows_of() -> Iterator[list[dict[str, Any]]]:
            time.sleep(wait)  # latency: both parts reach their load at about the same time
            yield [{"id": first + i, f"{name}_note": f"{name} {i}"} for i in range(rows)]

        return rows_of

    return [writer("left", 0), writer("right", 1_000_000)]
