"""The platform's pipelines by name."""

from __future__ import annotations

from flows.pipelines.spec import PipelineSpec
from flows.sources.daily_events import daily_events
from flows.sources.files import files
from flows.sources.prefect_history import prefect_history
from flows.sources.products import products
from flows.sources.synthetic import synthetic

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec
    for spec in (
        PipelineSpec("synthetic", synthetic, "synthetic", "generated append-only events"),
        PipelineSpec("products", products, "shop", "PostgreSQL products, merged on id"),
        PipelineSpec("files", files, "landing", "CSV/JSONL/Parquet files from a bucket"),
        PipelineSpec("daily_events", daily_events, "daily", "date-partitioned events (backfills)"),
        PipelineSpec("prefect_history", prefect_history, "platform", "Prefect run history"),
    )
}


def get_spec(name: str) -> PipelineSpec:
    try:
        return PIPELINES[name]
    except KeyError:
        known = ", ".join(sorted(PIPELINES))
        raise KeyError(f"unknown pipeline {name!r}; known pipelines: {known}") from None
