"""`runner(pipeline).run(source)` on a user's own `dlt.pipeline(...)`: durable by default.

Each run gets a fresh, empty pipelines dir (a new pod); only the local state store under
FLOWS_HOME survives between runs. Real DuckDB, real local store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import tenacity
from dlt.common.pipeline import LoadInfo

from flows.durable.runner import RunCallbacks, RunReport, runner
from flows.errors import root_cause
from flows.state import open_store
from flows.state.snapshot import PipelineLayout

FAST = tenacity.Retrying(
    stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
)


def numbers(upto: int, extracted: list[int]) -> Any:
    @dlt.resource(name="numbers", write_disposition="append", primary_key="id")
    def resource(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental("id", initial_value=0),
    ) -> Iterator[dict[str, int]]:
        for i in range(cursor.last_value + 1, upto + 1):
            extracted.append(i)
            yield {"id": i}

    return resource


def user_pipeline(tmp_path: Path, workdir: str, **kwargs: Any) -> dlt.Pipeline:
    return dlt.pipeline(
        "numbers_pipeline",
        pipelines_dir=str(tmp_path / workdir),
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="numbers_data",
        **kwargs,
    )


def ids(p: dlt.Pipeline) -> list[int]:
    with p.sql_client() as sql:
        return [int(r[0]) for r in sql.execute_sql("SELECT id FROM numbers ORDER BY id")]


def test_append_with_cursor_twice_in_fresh_working_dirs_holds_each_row_once(
    tmp_path: Path,
) -> None:
    first: list[int] = []
    info = runner(user_pipeline(tmp_path, "pod1"), retry_policy=FAST).run(numbers(1000, first))
    assert isinstance(info, LoadInfo) and len(info.loads_ids) == 1
    assert isinstance(info.report, RunReport) and info.report.loaded_rows["numbers"] == 1000

    second: list[int] = []
    again = user_pipeline(tmp_path, "pod2")  # empty working dir: a new pod
    info2 = runner(again, retry_pipeline_steps=["load"]).run(numbers(1200, second))
    assert isinstance(info2, LoadInfo)
    assert second == list(range(1001, 1201))  # the cursor came back from the state store
    assert ids(again) == list(range(1, 1201))
    # the user's own object is attached to the restored state
    assert again.first_run is False and again.state["_state_version"] >= 2
    layout = PipelineLayout(
        open_store(f"file://{tmp_path / 'home' / 'state'}"), again.pipeline_name
    )
    assert layout.generations(), "snapshots went to the local store under FLOWS_HOME"


def test_nothing_new_still_returns_a_load_info(tmp_path: Path) -> None:
    runner(user_pipeline(tmp_path, "pod1")).run(numbers(10, []))
    info = runner(user_pipeline(tmp_path, "pod2")).run(numbers(10, []))
    assert isinstance(info, LoadInfo) and info.loads_ids == []
    assert info.report.loaded_rows == {}


def test_durable_false_keeps_plain_dlt_behaviour(tmp_path: Path) -> None:
    runner(user_pipeline(tmp_path, "pod1"), durable=False).run(numbers(10, []))
    assert not (tmp_path / "home" / "state").exists()


class Recorder(RunCallbacks):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_before_step(self, pipeline: dlt.Pipeline, step: str) -> None:
        self.events.append(f"before {step}")

    def on_after_step(self, pipeline: dlt.Pipeline, step: str, info: Any) -> None:
        self.events.append(f"after {step}")

    def on_retry(
        self, pipeline: dlt.Pipeline, step: str, attempt: int, error: BaseException
    ) -> None:
        self.events.append(f"retry {step} after attempt {attempt}: {root_cause(error)}")

    def on_schema_change(self, pipeline: dlt.Pipeline, schema_update: dict[str, Any]) -> None:
        self.events.append(f"schema {sorted(t for t in schema_update if not t.startswith('_'))}")

    def on_run_end(
        self, pipeline: dlt.Pipeline, report: RunReport, error: BaseException | None
    ) -> None:
        self.events.append(f"end {report.loaded_rows.get('numbers')} {error}")


def test_callbacks_at_each_step_retry_schema_change_and_end(tmp_path: Path) -> None:
    blips = {"left": 1}

    @dlt.resource(name="numbers", write_disposition="append")
    def flaky() -> Iterator[dict[str, int]]:
        for i in range(1, 11):
            if i == 5 and blips["left"]:
                blips["left"] -= 1
                raise ConnectionError("network blip")
            yield {"id": i}

    recorder = Recorder()
    runner(user_pipeline(tmp_path, "pod1"), retry_policy=FAST, callbacks=[recorder]).run(flaky())
    assert recorder.events == [
        "before extract",
        "retry extract after attempt 1: network blip",
        "before extract",
        "after extract",
        "before normalize",
        "after normalize",
        "before load",
        "after load",
        "schema ['numbers']",
        "end 10 None",
    ]
    # a second run with nothing new changes no schema
    recorder.events.clear()
    runner(user_pipeline(tmp_path, "pod2"), callbacks=[recorder]).run(numbers(0, []))
    assert not any(e.startswith("schema") for e in recorder.events)
