"""OpenLineage events of a dlt run through openlineage-python's real HTTP transport into a
local receiver: a fan-out part's parents, which failure ends the run, the run id's
stability. (The whole path, a killed run included, is tests/integration/test_observe.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from flows.durable.report import RunReport
from flows.errors import ConfigError
from flows.progress.lineage import LineageRun, configured
from flows.progress.lineage_events import LineageCallbacks
from tests.integration.lineage import parse, receiver, spec_problems

CREATED = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
PART_RUN, FANOUT_RUN = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    with receiver() as (url, received):
        monkeypatch.setenv("OPENLINEAGE_URL", url)
        yield received


@pytest.fixture
def pipeline(tmp_path: Path) -> dlt.Pipeline:
    p = dlt.pipeline(
        "lineage_unit",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="shop",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    p.run([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], table_name="orders")
    return p


def _run(**given: Any) -> LineageRun:
    return LineageRun(
        run_id=LineageRun.run_id_of("flow-run/task/0", CREATED),
        flow_run_id=PART_RUN,
        flow_name="fanout-part",
        root_run_id=FANOUT_RUN,
        root_flow_name="decompose",
        **given,
    )


def test_off_unless_the_client_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not configured()
    (tmp_path / "openlineage.yml").write_text("transport: {type: console}\n")
    assert configured()
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    assert not configured()


def test_the_run_id_is_the_same_for_every_attempt_and_new_for_another_run() -> None:
    first = LineageRun.run_id_of("flow-run/task/0", CREATED)
    assert LineageRun.run_id_of("flow-run/task/0", CREATED) == first
    assert LineageRun.run_id_of("flow-run/task/1", CREATED) != first
    assert uuid.UUID(first).version == 7


def test_a_fan_out_part_is_a_child_of_its_flow_run_under_the_fan_out(
    events: list[dict[str, Any]], pipeline: dlt.Pipeline
) -> None:
    callbacks = LineageCallbacks(_run())
    callbacks.on_before_step(pipeline, "extract")
    report = RunReport("lineage_unit", "duckdb", "shop", loaded_rows={"orders": 2, "_dlt_loads": 1})
    callbacks.on_run_end(pipeline, report, None)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        assert spec_problems(event) == []
        parse(event)
    parent = events[-1]["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == PART_RUN and parent["job"]["name"] == "fanout-part"
    assert parent["root"]["run"]["runId"] == FANOUT_RUN
    assert parent["root"]["job"]["name"] == "decompose"
    [output] = events[-1]["outputs"]
    assert output["name"] == "shop.orders"
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert {"id", "name"} <= {f["name"] for f in output["facets"]["schema"]["fields"]}
    assert [i["name"] for i in events[-1]["inputs"]] == ["orders"]


@pytest.mark.parametrize(
    ("error", "last_try", "expected"),
    [
        (ConnectionError("reset"), False, "OTHER"),  # Prefect retries it: the run goes on
        (ConnectionError("reset"), True, "FAIL"),  # the last try
        (ConfigError("bad setting"), False, "FAIL"),  # terminal: no retry follows
    ],
)
def test_which_failure_ends_the_run(
    events: list[dict[str, Any]],
    pipeline: dlt.Pipeline,
    error: BaseException,
    last_try: bool,
    expected: str,
) -> None:
    callbacks = LineageCallbacks(_run(first_attempt=False, last_try=last_try))
    callbacks.on_run_end(pipeline, RunReport("lineage_unit", "duckdb", "shop"), error)
    assert [e["eventType"] for e in events] == ["RUNNING", expected]
    assert events[-1]["run"]["facets"]["errorMessage"]["message"].startswith(type(error).__name__)
    assert spec_problems(events[-1]) == []
    parse(events[-1])


def test_a_receiver_that_is_down_does_not_fail_the_run(
    monkeypatch: pytest.MonkeyPatch, pipeline: dlt.Pipeline, tmp_path: Path
) -> None:
    """Configured by a file, as openlineage-python reads it (without retries: the client's
    default retries a refused connection for about 18 s)."""
    config = tmp_path / "openlineage.yml"
    config.write_text(
        "transport: {type: http, url: 'http://127.0.0.1:9', retry: {total: 0}}\n"  # nobody
    )
    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    assert configured()
    callbacks = LineageCallbacks(_run())
    callbacks.on_run_end(pipeline, RunReport("lineage_unit", "duckdb", "shop"), None)
