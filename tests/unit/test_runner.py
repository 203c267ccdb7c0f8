"""The runner's step retries on real DuckDB and a local store: transient vs terminal errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
import tenacity
from dlt.common.exceptions import TerminalValueError
from dlt.pipeline.exceptions import PipelineStepFailed

from flows.durable.runner import runner
from flows.errors import is_terminal
from flows.state import StateSession, open_store

FAST = tenacity.Retrying(
    stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
)


def make_source(failures: dict[str, int], exc: type[BaseException] = ConnectionError) -> Any:
    @dlt.resource(name="items", write_disposition="append")
    def items() -> Iterator[dict[str, int]]:
        for i in range(100):
            if i == 50 and failures.get("extract", 0) > 0:
                failures["extract"] -= 1
                raise exc("network blip")
            yield {"id": i}

    return items


def pipeline(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        "retry_test",
        pipelines_dir=str(tmp_path / "pipes"),
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="d",
    )


def count(p: dlt.Pipeline) -> int:
    with p.sql_client() as sql:
        return int(sql.execute_sql("SELECT COUNT(*) FROM items")[0][0])


def test_transient_extract_failure_is_retried_in_process(tmp_path: Path) -> None:
    failures = {"extract": 2}
    p = pipeline(tmp_path)
    report = runner(p, retry_policy=FAST).run(make_source(failures)).report
    extract = next(s for s in report.steps if s.step == "extract")
    assert extract.attempts == 3
    assert extract.errors == ["ConnectionError: network blip"] * 2
    assert count(p) == 100


def test_step_not_named_is_not_retried(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    with pytest.raises(PipelineStepFailed):
        runner(p, retry_policy=FAST, retry_pipeline_steps=["load"]).run(make_source({"extract": 1}))


def test_terminal_error_is_not_retried(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    r = runner(p, retry_policy=FAST)
    failures = {"extract": 5}
    with pytest.raises(PipelineStepFailed):
        r.run(make_source(failures, exc=TerminalValueError))
    assert failures["extract"] == 4  # one attempt only


def test_terminal_classification() -> None:
    assert is_terminal(TerminalValueError("bad config"))
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = TerminalValueError("bad config")
    assert is_terminal(wrapped)
    assert not is_terminal(ConnectionError("blip"))


def test_runner_snapshots_each_step(tmp_path: Path) -> None:
    p_dir = tmp_path / "pipes"
    store = open_store(f"file://{tmp_path / 'store'}")
    with StateSession(store, "retry_test", p_dir, lease_settle=0) as session:
        report = runner(pipeline(tmp_path), session=session).run(make_source({})).report
    assert report.snapshots is not None
    assert report.snapshots.steps == ["extract", "normalize", "load"]
    assert session.layout.generations() == [1, 2, 3]
    assert session.layout.read_manifest(2).load_ids("load/normalized")


def test_unknown_step_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown steps"):
        runner(pipeline(tmp_path), retry_pipeline_steps=["extrakt"])
