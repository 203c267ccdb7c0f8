"""The dlt+ docs' pattern: the user's own `dlt.pipeline(...)` with `PrefectCollector`,
wrapped by `runner(...)` inside a Prefect task and flow. Durable with no extra code: each
run takes the pipeline's lease, restores its state from the store, snapshots every step."""

from __future__ import annotations

import tempfile
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from prefect import flow, task
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from flows.durable.runner import runner
from flows.prefect.collector import PrefectCollector
from shop_project.sources import shop_api


@task(retries=2)
def load_shop(base_url: str) -> LoadInfo:
    pipeline = dlt.pipeline(
        pipeline_name="shop_snippet",
        destination="duckdb",
        dataset_name="shop",
        progress=PrefectCollector(),
        pipelines_dir=tempfile.mkdtemp(),  # an empty disk, as on a fresh pod
    )
    return runner(
        pipeline,
        retry_policy=Retrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=1, max=10),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        ),
        retry_pipeline_steps=["normalize", "load"],
    ).run(shop_api(base_url=base_url))


@flow(name="shop-snippet")
def shop_snippet(base_url: str) -> dict[str, Any]:
    info = load_shop(base_url)
    report = info.report
    return {
        "type": type(info).__name__,
        "loads_ids": list(info.loads_ids),
        "extracted": {t: n for t, n in report.extracted_rows.items() if not t.startswith("_")},
    }
