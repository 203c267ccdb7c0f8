"""The platform's own pipelines, declared like any installed package's: each is an entry
point of the `flows.pipelines` group in pyproject.toml. Sources are named, not imported."""

from __future__ import annotations

from flows.pipelines.spec import PipelineSpec

synthetic = PipelineSpec(
    "synthetic",
    "flows.sources.synthetic:synthetic",
    "synthetic",
    None,
    "generated append-only events",
)
products = PipelineSpec(
    "products",
    "flows.sources.products:products",
    "shop",
    None,
    "PostgreSQL products, merged on id",
)
files = PipelineSpec(
    "files",
    "flows.sources.files:files",
    "landing",
    None,
    "CSV/JSONL/Parquet files from a bucket",
)
daily_events = PipelineSpec(
    "daily_events",
    "flows.sources.daily_events:daily_events",
    "daily",
    None,
    "date-partitioned events (backfills)",
)
prefect_history = PipelineSpec(
    "prefect_history",
    "flows.sources.prefect_history:prefect_history",
    "platform",
    None,
    "Prefect run history",
)
