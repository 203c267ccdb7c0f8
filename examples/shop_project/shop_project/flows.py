"""The shop's flows: the declared `shop_items` pipeline as a Prefect task."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.prefect.tasks import dlt_task
from shop_project.sources import shop_api


@dlt_task(pipeline="shop_items")
def shop_items(base_url: str | None = None) -> Any:
    """Only builds the source: the platform runs it durably in a fresh child process."""
    return shop_api(base_url=base_url) if base_url else shop_api()


@flow(name="shop-daily")
def shop_daily(base_url: str | None = None) -> dict[str, Any]:
    return shop_items(base_url)
