"""Fan-out parts: plans, names, the part's own schema and staging dataset, and the refusal of
parallel parts into a single-writer destination. Real dlt sources and pipelines, no mocks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dlt
import pytest

from flows.errors import EXIT_CONFIG, exit_code_for, is_terminal
from flows.parts.plan import (
    FanoutConfigError,
    Part,
    is_part_of,
    parallelism_for,
    part_schema_name,
    part_spec,
    plan_dates,
    plan_resources,
)
from flows.pipelines import PipelineSpec


@dlt.source(name="shop")
def shop() -> list[object]:
    return [
        dlt.resource([{"id": 1}], name="orders"),
        dlt.resource([{"id": 2}], name="customers"),
    ]


def spec(destination: str | None) -> PipelineSpec:
    return PipelineSpec("shop", shop, "shop_data", destination)


def test_date_plan_covers_the_range_in_chunks() -> None:
    parts = plan_dates(date(2024, 1, 1), date(2024, 1, 10), 4)
    assert [p.key for p in parts] == ["20240101-20240104", "20240105-20240108", "20240109-20240110"]
    assert parts[-1].source_kwargs() == {
        "start_date": date(2024, 1, 9),
        "end_date": date(2024, 1, 10),
    }
    assert [p.key for p in plan_dates(date(2024, 2, 1), date(2024, 2, 2), 1)] == [
        "20240201",
        "20240202",
    ]


@pytest.mark.parametrize(
    ("start", "end", "chunk", "says"),
    [
        (date(2024, 2, 1), date(2024, 1, 1), 1, "end_date 2024-01-01 is before start_date"),
        (date(2024, 1, 1), date(2024, 1, 2), 0, "chunk_days must be at least 1"),
    ],
)
def test_bad_ranges_are_config_errors(start: date, end: date, chunk: int, says: str) -> None:
    with pytest.raises(FanoutConfigError, match=says) as refused:
        plan_dates(start, end, chunk)
    assert is_terminal(refused.value) and exit_code_for(refused.value) == EXIT_CONFIG


def test_resource_plan_and_unknown_resources() -> None:
    assert [p.resources for p in plan_resources(shop())] == [("orders",), ("customers",)]
    assert [p.key for p in plan_resources(shop(), ["customers"])] == ["customers"]
    with pytest.raises(FanoutConfigError, match=r"no resources \['refunds'\]; it has: orders"):
        plan_resources(shop(), ["refunds"])


def test_parallel_parts_into_duckdb_are_refused() -> None:
    with pytest.raises(FanoutConfigError, match="a DuckDB file allows one writer process") as no:
        parallelism_for(spec("duckdb"), 4)
    assert exit_code_for(no.value) == EXIT_CONFIG
    assert parallelism_for(spec("duckdb"), None) == 1
    assert parallelism_for(spec("duckdb"), 1) == 1
    assert parallelism_for(spec("postgres"), None) == 4
    assert parallelism_for(spec("postgres"), 7) == 7
    with pytest.raises(FanoutConfigError, match="at least 1"):
        parallelism_for(spec("postgres"), 0)


def test_part_names_schema_names_and_membership() -> None:
    assert part_schema_name("shop", "20240101-20240107") == "shop__20240101_20240107"
    long = part_schema_name("s" * 60, "x" * 30)
    assert len(long) <= 64 and long.startswith("s" * 10)
    assert is_part_of("shop--orders", "shop") and is_part_of("shop", "shop")
    assert not is_part_of("shopping", "shop") and not is_part_of("shop_x--a", "shop")


def test_a_part_is_its_own_pipeline_and_schema_into_the_shared_dataset(tmp_path: Path) -> None:
    part = part_spec(spec("duckdb"), Part("orders", resources=("orders",)))
    assert part.name == "shop--orders" and part.dataset == "shop_data"
    source = part.check_source(shop())
    assert source.schema.name == "shop__orders"
    assert list(source.selected_resources) == ["orders"]
    destination = part.build_destination()
    assert destination.config_params["staging_dataset_name_layout"] == "%s_orders_staging"
    pipeline = part.build_pipeline(tmp_path)
    assert pipeline.pipeline_name == "shop--orders" and pipeline.dataset_name == "shop_data"
    assert part.run_callbacks()  # the shared schema lock
    with pytest.raises(FanoutConfigError, match="has no resources"):
        part_spec(spec("duckdb"), Part("x", resources=("refunds",))).check_source(shop())


def test_tune_evidence_names_the_parts_a_part_deployment_ran() -> None:
    from dataclasses import replace

    from flows.kube.tuning import recommend
    from flows.progress.records import RunRecord

    base = RunRecord(
        deployment="fanout-part",
        pipeline="x",
        flow_run_id="r",
        attempt=1,
        outcome="completed",
        wall_seconds=20.0,
        cpu_seconds=10.0,
        peak_rss_bytes=300 * 2**20,
    )
    records = [replace(base, pipeline=f"paged--2024010{d}") for d in range(1, 7)]
    records.append(replace(base, pipeline="shop--orders"))
    evidence = recommend("fanout-part", records, {}).evidence
    assert "parts of paged: 6 (paged--20240101, paged--20240102, paged--20240103, " in (
        "\n".join(evidence)
    )
    assert "parts of shop: 1 (shop--orders)" in evidence
