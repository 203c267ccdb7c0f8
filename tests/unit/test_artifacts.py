"""What artifacts say: root and nested rows apart, readable step names, real headers."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import dlt

from flows.prefect.collector import PrefectCollector
from flows.progress.artifacts import (
    ArtifactHandle,
    markdown_pairs,
    rows_phrase,
    rows_tables,
    step_label,
)
from flows.progress.collector import nested_tables
from flows.sources.synthetic import synthetic


def test_key_value_tables_have_a_header_and_numbers_have_separators() -> None:
    text = markdown_pairs({"pipeline": "synthetic", "rows": 1234567, "skipped": None})
    header = text.splitlines()[0]
    assert header == "| item | value |"
    assert "| **rows** | 1,234,567 |" in text and "skipped" not in text


def test_nested_tables_come_from_the_schema_and_are_counted_apart(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        "nested_rows",
        pipelines_dir=str(tmp_path),
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
    )
    pipeline.run(synthetic(rows=100))
    nested = nested_tables(pipeline, None)
    assert nested == {"events__tags"}
    rows = {"events": 100_000, "events__tags": 200_000}
    assert rows_phrase(rows, nested) == "100,000 rows (+200,000 in nested tables)"
    tables = rows_tables(rows, nested)
    root, children = tables.split("#### Nested tables")
    assert "| events | 100,000 |" in root and "events__tags" not in root
    assert "| events__tags | 200,000 |" in children


def test_step_names_show_when_the_package_was_extracted_not_its_load_id() -> None:
    assert step_label("Normalize synthetic in 1796160694.1351204") == (
        "Normalize synthetic (package extracted 2026-12-01 21:31:34 UTC)"
    )
    assert step_label("Extract synthetic") == "Extract synthetic"


class SlowSink:
    """Records progress updates in the order they finish; a tick's update takes a while,
    as an API call under load does."""

    def __init__(self) -> None:
        self.calls = self.failures = 0
        self.updates: list[float] = []
        self.ticking = threading.Event()

    def create(
        self, key: str, kind: str, data: Any, description: str, flow_level: bool = False
    ) -> ArtifactHandle:
        return ArtifactHandle()

    def update(self, handle: ArtifactHandle, data: Any, description: str) -> None:
        if data != 100.0:
            self.ticking.set()
            time.sleep(0.5)
        self.updates.append(data)

    def create_once(self, key: str, kind: str, data: Any, description: str, marker: str) -> None:
        pass

    def flush(self, timeout: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_step_ends_at_100_even_when_a_tick_is_under_way() -> None:
    sink = SlowSink()
    collector = PrefectCollector(sink=sink, interval=0.01, pipeline_name="p")
    collector._start("Normalize")
    collector.update("events", 10)
    assert sink.ticking.wait(10)
    collector._stop()  # while the tick's update is still being sent
    time.sleep(0.7)
    assert sink.updates[-1] == 100.0, sink.updates


class RecordingSink(SlowSink):
    """Keeps every description and every markdown body it is sent, instantly."""

    def __init__(self) -> None:
        super().__init__()
        self.descriptions: list[str] = []
        self.bodies: dict[str, str] = {}

    def create(
        self, key: str, kind: str, data: Any, description: str, flow_level: bool = False
    ) -> ArtifactHandle:
        self.descriptions.append(description)
        if kind == "markdown":
            self.bodies[key] = str(data)
        return ArtifactHandle()

    def update(self, handle: ArtifactHandle, data: Any, description: str) -> None:
        self.descriptions.append(description)


def test_extract_progress_shows_rows_and_the_report_reads_as_words(tmp_path: Path) -> None:
    """A real run through the runner: the extract's progress ends with the rows of its tables
    (not the pipeline state's counter), a first run restores nothing, and no dict shows."""
    from flows.durable.runner import runner

    sink = RecordingSink()
    pipeline = dlt.pipeline(
        "progress_words",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="words",
        pipelines_dir=str(tmp_path / "pipelines"),
        progress=PrefectCollector(sink=sink, pipeline_name="progress_words"),
    )
    runner(pipeline, state_url=(tmp_path / "state").as_uri()).run(
        synthetic(rows=1500), loader_file_format="jsonl"
    )
    extract_done = [d for d in sink.descriptions if "Extract" in d and "done" in d][-1]
    assert "events 1,500 rows" in extract_done, sink.descriptions
    assert "_dlt" not in extract_done and "resources 1/1" in extract_done, extract_done
    report = sink.bodies["progress-words-report"]
    assert "nothing to restore (first run)" in report and "generation 0" not in report
    everything = "\n".join([*sink.descriptions, *sink.bodies.values()])
    assert "{'" not in everything, everything


def test_a_resume_says_what_it_loaded() -> None:
    from flows.durable.report import resume_phrase
    from flows.durable.resume import ResumePlan

    assert resume_phrase(ResumePlan()) is None
    plan = ResumePlan(normalized=["1", "2"], already_loaded=["1"], rows_removed={"events": 30})
    assert resume_phrase(plan) == (
        "2 pending packages finished: 2 normalized (loaded now); 1 already in the destination, "
        "not loaded again; rows of a load never completed removed first: events 30"
    )
