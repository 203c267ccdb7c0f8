"""Which sources a checkpointed extract takes, and what a partly loaded package's job files
say (flows/durable/segments.py, flows/durable/job_resume.py)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import dlt
import pytest

from flows.durable.job_resume import read_job
from flows.durable.report import CheckpointReport, RunReport, SegmentReport, format_report
from flows.durable.segments import (
    DEFAULT_CHECKPOINT_EVERY,
    CheckpointRefusedError,
    plan_segments,
)
from flows.errors import EXIT_CONFIG
from flows.pipelines import PipelineSpec
from flows.pipelines.errors import DeclarationError


def _source(ordered: bool, plain: bool = False) -> Any:
    @dlt.resource
    def items(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental(
            "id", initial_value=0, row_order="asc" if ordered else None
        ),
    ) -> Any:
        yield [{"id": 1}]

    @dlt.resource
    def other() -> Any:
        yield [{"id": 1}]

    return dlt.source(lambda: [items, other] if plain else [items], name="s")()


def test_a_source_with_an_ordered_cursor_gets_the_default_or_its_setting() -> None:
    assert plan_segments(_source(True), None, "p").every == DEFAULT_CHECKPOINT_EVERY
    assert plan_segments(_source(True), 12.5, "p").every == 12.5
    off = plan_segments(_source(True), 0, "p")
    assert off.every is None and "0" in off.why


def test_a_source_that_cannot_resume_from_its_cursor_runs_whole_or_is_refused() -> None:
    fallback = plan_segments(_source(False), None, "p")
    assert fallback.every is None and "row_order None, not 'asc'" in fallback.why
    with pytest.raises(CheckpointRefusedError) as refused:
        plan_segments(_source(True, plain=True), 30, "orders")
    assert refused.value.exit_code == EXIT_CONFIG
    message = str(refused.value)
    assert "resource 'other' has no incremental cursor" in message
    assert "PIPELINES__ORDERS__CHECKPOINT_EVERY" in message and "\n" not in message


@pytest.mark.parametrize("value", ["soon", "-1", "inf"])
def test_a_bad_checkpoint_every_names_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINES__ORDERS__CHECKPOINT_EVERY", value)
    spec = PipelineSpec(name="orders", source="x:y")
    with pytest.raises(DeclarationError, match="PIPELINES__ORDERS__CHECKPOINT_EVERY"):
        spec.checkpoint_setting()


def test_the_environment_wins_over_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PipelineSpec(name="orders", source="x:y", checkpoint_every=30)
    assert spec.checkpoint_setting() == 30
    monkeypatch.setenv("PIPELINES__ORDERS__CHECKPOINT_EVERY", "7")
    assert spec.checkpoint_setting() == 7


def test_an_insert_values_job_gives_its_rows_and_first_row_id(tmp_path: Path) -> None:
    job = tmp_path / "t.abc.0.insert_values.gz"
    with gzip.open(job, "wt") as fh:
        fh.write('INSERT INTO {}("id","s","_dlt_load_id","_dlt_id")\nVALUES\n')
        fh.write("(1,E'a''b\\\\c,d)',E'17.5',E'6D964bZphfJkYQ'),\n")
        fh.write("(2,E'x',E'17.5',E'9uf8PeFcn83ETA');")
    assert read_job(job, "insert_values") == (2, "6D964bZphfJkYQ")


def test_the_report_shows_checkpoints_and_what_a_resume_skipped() -> None:
    report = RunReport("orders", "postgres", "orders")
    report.checkpoints = CheckpointReport(
        every=60,
        segments=[SegmentReport(400, 61.0, {"items": 400}), SegmentReport(40, 3.0, {"items": 440})],
        resumed_segments=3,
        rows_not_extracted=1200,
    )
    report.resume.resumed_jobs = ["1765.1"]
    report.resume.jobs_skipped, report.resume.jobs_reloaded = 106, 75
    report.resume.reset_reasons = {"1765.2": "table orders is not an append table"}
    text = format_report(report)
    assert "resumed after 3 committed segments: 1,200 rows not extracted again" in text
    assert "checkpoints every 60 s: 2 segments committed, cursor reached: items 440" in text
    assert "106 jobs proven committed not loaded again, 75 loaded" in text
    assert "package 1765.2 reloaded whole: table orders is not an append table" in text
    whole = RunReport("plain", "duckdb", "plain")
    whole.checkpoints = CheckpointReport(why="resource 'events' has no incremental cursor")
    assert "extract in one segment: resource 'events' has no incremental cursor" in format_report(
        whole
    )
