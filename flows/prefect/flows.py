"""The deployable flows; `prefect.yaml` names them as `flows.prefect.flows:<name>`.

Module paths, not file paths: Prefect loads a file entrypoint as a module named after the
file (`flows`), which would shadow this package."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from prefect import flow, get_run_logger

from flows.prefect.tasks import dlt_task, make_pipeline_flow
from flows.sources.daily_events import daily_events

synthetic_daily = make_pipeline_flow("synthetic", "synthetic-daily")
products_daily = make_pipeline_flow("products", "products-daily")
products_full_refresh = make_pipeline_flow("products", "products-full-refresh", full_refresh=True)
files_weekly = make_pipeline_flow("files", "files-weekly")
platform_history = make_pipeline_flow("prefect_history", "platform-history")


@dlt_task(pipeline="daily_events")
def daily_events_range(start_date: date, end_date: date, rows_per_day: int = 100) -> Any:
    """One chunk of a backfill: days start_date..end_date of the daily_events source."""
    return daily_events(start_date=start_date, end_date=end_date, rows_per_day=rows_per_day)


@flow(name="backfill")
def backfill(
    start_date: date, end_date: date, chunk_days: int = 31, rows_per_day: int = 100
) -> dict[str, Any]:
    """Loads daily_events for a date range in chunks; rerunning a range is idempotent."""
    if end_date < start_date:
        raise ValueError(f"end_date {end_date} is before start_date {start_date}")
    if chunk_days < 1:
        raise ValueError("chunk_days must be at least 1")
    log = get_run_logger()
    rows = 0
    chunks = 0
    first = start_date
    while first <= end_date:
        last = min(end_date, first + timedelta(days=chunk_days - 1))
        log.info("backfill chunk %s..%s", first, last)
        result = daily_events_range(first, last, rows_per_day)
        rows += sum(result["rows"].values())
        chunks += 1
        first = last + timedelta(days=1)
    return {
        "pipeline": "daily_events",
        "chunks": chunks,
        "rows": rows,
        "days": (end_date - start_date).days + 1,
    }
