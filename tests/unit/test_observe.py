"""The exporter's arithmetic without a server: run records into counters, schedules into
expected intervals, and the exposition Prometheus reads (parsed back by prometheus_client)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flows.observe.collector import PlatformCollector
from flows.observe.reader import Current, Pool, Reader
from flows.observe.schedules import expected_interval
from flows.observe.tally import Tally
from flows.progress.records import RunRecord


def _record(**given: Any) -> RunRecord:
    base: dict[str, Any] = {
        "deployment": "daily",
        "pipeline": "events",
        "flow_run_id": "r1",
        "attempt": 1,
        "outcome": "completed",
        "wall_seconds": 10.0,
        "cpu_seconds": 5.0,
        "peak_rss_bytes": 300 << 20,
    }
    return RunRecord(**{**base, **given})


def test_a_killed_attempt_and_its_resumed_retry() -> None:
    tally = Tally()
    tally.add_record(_record(outcome="killed", oom_killed=True, memory_limit=512 << 20))
    tally.add_record(
        _record(
            attempt=2,
            tables={"events": 1000, "events__tags": 2000},
            packages=1,
            resumed_packages=1,
            resumed_rows=3000,
            step_seconds={"load": 4.0},
            step_attempts={"load": 2},
            snapshots=2,
            snapshot_bytes=4096,
        )
    )
    assert tally.attempts == {("daily", "events", "killed"): 1, ("daily", "events", "completed"): 1}
    assert tally.retries == {("daily", "events"): 1}
    assert tally.rows == {("events", "events"): 1000, ("events", "events__tags"): 2000}
    assert tally.resumes[("events",)] == 1
    assert tally.rows_not_extracted_again[("events",)] == 3000
    assert tally.oom_killed[("daily", "events")] == 1
    assert tally.step_retries[("events", "load")] == 1
    assert tally.step_duration[("events", "load")].count == 1
    assert tally.snapshot_bytes[("events",)] == 4096
    assert tally.memory_limit[("daily", "events")] == 512 << 20


def test_errors_are_counted_by_their_class() -> None:
    tally = Tally()
    tally.add_record(_record(outcome="failed", error="StoreUnreachableError"))
    tally.add_record(_record(outcome="failed", error="FenceLostError"))
    tally.add_record(_record(outcome="failed", error="ValueError"))
    assert dict(tally.store_errors) == {
        ("events", "StoreUnreachableError"): 1,
        ("events", "FenceLostError"): 1,
    }
    assert tally.fenced[("events",)] == 1


def test_records_of_an_older_release_still_read() -> None:
    old = {"deployment": "d", "pipeline": "p", "flow_run_id": "", "attempt": 1}
    old |= {"outcome": "completed", "wall_seconds": 1, "cpu_seconds": 1, "peak_rss_bytes": 1}
    record = RunRecord.from_artifact_data([old])
    tally = Tally()
    tally.add_record(record)
    assert tally.rows == {} and tally.resumes == {}


def test_expected_interval_from_schedules() -> None:
    monday = datetime(2026, 12, 7, tzinfo=UTC)
    daily = SimpleNamespace(active=True, schedule=CronSchedule(cron="0 5 * * *"))
    hourly = SimpleNamespace(active=True, schedule=IntervalSchedule(interval=timedelta(hours=1)))
    weekdays = SimpleNamespace(active=True, schedule=CronSchedule(cron="0 6 * * 1-5"))
    paused = SimpleNamespace(active=False, schedule=IntervalSchedule(interval=timedelta(minutes=5)))
    assert expected_interval([daily], monday) == 86400
    assert expected_interval([daily, hourly, paused], monday) == 3600
    assert expected_interval([weekdays], monday) == 3 * 86400  # over the weekend
    assert expected_interval([paused]) is None


def test_the_exposition_parses_back() -> None:
    reader = Reader(client=lambda: None, min_interval=1e9)
    reader.current = Current(
        in_flight={("daily", "Late"): 2},
        pools=[Pool("k8s", 3, 4, False, True, {"online": 1}, 1.7e9)],
        expected_interval={"daily": 86400},
        read_at=float("inf"),  # no read: the API is not there
    )
    reader.tally.add_deployment("daily")
    reader.tally.add_run("daily", "Failed", 42.0, 1.7e9)
    reader.tally.add_record(_record(tables={"events": 7}, step_seconds={"extract": 1.5}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(reader))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("flows_flow_runs", (("deployment", "daily"), ("state", "Late")))] == 2
    finished = "flows_flow_runs_finished_total"
    assert samples[(finished, (("deployment", "daily"), ("state", "Failed")))] == 1
    assert samples[(finished, (("deployment", "daily"), ("state", "Crashed")))] == 0
    assert samples[("flows_rows_loaded_total", (("pipeline", "events"), ("table", "events")))] == 7
    assert samples[("flows_work_pool_slots_limit", (("pool", "k8s"),))] == 4
    bucket = (
        "flows_flow_run_duration_seconds_bucket",
        (("deployment", "daily"), ("le", "60.0"), ("state", "Failed")),
    )
    assert samples[bucket] == 1
    assert not any("flow_run_id" in dict(labels) for _, labels in samples)


def test_bad_serve_options_exit_2_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli.main import main

    assert main(["metrics", "serve", "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: ConfigError: --port 70000 is not a TCP port: give 1-65535"
