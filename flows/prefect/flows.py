"""The deployable flows; `prefect.yaml` names them as `flows.prefect.flows:<name>`.

Module paths, not file paths: Prefect loads a file entrypoint as a module named after the
file (`flows`), which would shadow this package."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from flows.parts.plan import plan_dates, plan_resources
from flows.pipelines import get_spec
from flows.prefect.fanout import PART_DEPLOYMENT, fan_out, fanout_part
from flows.prefect.tasks import make_pipeline_flow

synthetic_daily = make_pipeline_flow("synthetic", "synthetic-daily")
products_daily = make_pipeline_flow("products", "products-daily")
products_full_refresh = make_pipeline_flow("products", "products-full-refresh", full_refresh=True)
files_weekly = make_pipeline_flow("files", "files-weekly")
platform_history = make_pipeline_flow("prefect_history", "platform-history")
__all__ = ["fanout_part"]  # deployed as fanout-part (the parts of backfill and decompose)


@flow(name="backfill")
def backfill(
    start_date: date,
    end_date: date,
    chunk_days: int = 31,
    rows_per_day: int | None = None,
    pipeline: str = "daily_events",
    parallelism: int | None = None,
    options: dict[str, Any] | None = None,
    job_variables: dict[str, Any] | None = None,
    part_retries: int = 1,
    part_deployment: str = PART_DEPLOYMENT,
) -> dict[str, Any]:
    """Loads a date range of a pipeline whose source takes start_date and end_date, one part
    (its own flow run) per `chunk_days`, `parallelism` at a time; rerunning a range is
    idempotent. `rows_per_day` is the daily_events source's option."""
    parts = plan_dates(start_date, end_date, chunk_days)
    extra = {"rows_per_day": rows_per_day} if rows_per_day is not None else {}
    return fan_out(
        get_spec(pipeline),
        parts,
        parallelism=parallelism,
        options={**(options or {}), **extra},
        job_variables=job_variables,
        part_retries=part_retries,
        part_deployment=part_deployment,
    )


@flow(name="decompose")
def decompose(
    pipeline: str,
    resources: list[str] | None = None,
    parallelism: int | None = None,
    options: dict[str, Any] | None = None,
    job_variables: dict[str, Any] | None = None,
    part_retries: int = 1,
    part_deployment: str = PART_DEPLOYMENT,
) -> dict[str, Any]:
    """Loads each resource of a pipeline's source (each table of a sql_database source) as
    its own part and flow run, `parallelism` at a time; `resources` picks some. Rerunning a
    set of resources is idempotent when their tables merge or replace."""
    spec = get_spec(pipeline)
    parts = plan_resources(spec.build_source(**(options or {})), resources)
    return fan_out(
        spec,
        parts,
        parallelism=parallelism,
        options=options,
        job_variables=job_variables,
        part_retries=part_retries,
        part_deployment=part_deployment,
    )
