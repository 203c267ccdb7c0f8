"""Observability end to end, on one local stack whose flow runs send OpenLineage events to
the test's receiver.

Metrics: a real Prometheus scrapes `flows metrics serve` while flow runs complete, fail, and
are killed during load and resumed; PromQL through Prometheus's HTTP API must match the
destination and the runs. The chart's alert rules are loaded into the same Prometheus, and
every dashboard panel's query must return data there.

Lineage: every event meets the spec and parses back into openlineage-python's classes; a
run killed during load and resumed by a fresh attempt is one run: START ... COMPLETE, with
the destination's row counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import StateType

from devstack.ports import free_port
from devstack.stack import LocalStack
from flows.system.resources import container_limits
from tests.integration.helpers import (
    serving,
    start,
    stop,
    synthetic_counts,
    synthetic_killed_in_load,
    wait,
    warehouse,
)
from tests.integration.lineage import parse, receiver, spec_problems
from tests.integration.prometheus import Prometheus, prometheus

pytestmark = pytest.mark.xdist_group("metrics")

FILES = Path(__file__).resolve().parents[2] / "charts" / "prefect-dlt" / "files"
SYNTHETIC = 'pipeline="synthetic"'


@pytest.fixture(scope="module")
def lineage_events() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with receiver() as found:
        yield found


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, lineage_events: tuple[str, list[dict[str, Any]]]
) -> Iterator[LocalStack]:
    stack = LocalStack(
        tmp_path_factory.mktemp("stack"),
        api_port=free_port(avoid_plus=None),
        extra_env={"OPENLINEAGE_URL": lineage_events[0]},  # flow runs inherit the worker's
    )
    with serving(stack):
        yield stack


@pytest.fixture(scope="module")
def scraped(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """The exporter, reading the stack's API with its auth string, and Prometheus scraping it."""
    port = free_port(avoid_plus=None)
    root = tmp_path_factory.mktemp("metrics")
    log = (root / "exporter.log").open("w")
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows",
            "metrics",
            "serve",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--min-interval",
            "0",
        ],
        env={**os.environ, **stack.client_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with prometheus(root / "prometheus", [f"127.0.0.1:{port}"], FILES / "alerts.yaml") as p:
            assert p.until('up{job="flows"}', 1) == 1, (root / "exporter.log").read_text()
            yield p
    finally:
        stop(exporter)
        log.close()


def _completed(client: SyncPrefectClient, deployment: str, **kwargs: Any) -> None:
    run = wait(client, start(client, deployment, **kwargs).id, timeout=400)
    assert run.state is not None and run.state.type == StateType.COMPLETED, run.state


def test_rows_resumes_failures_and_freshness_reach_prometheus(
    stack: LocalStack, client: SyncPrefectClient, scraped: Prometheus
) -> None:
    duck = warehouse(stack.root / "home", "synthetic")
    _completed(client, "synthetic-daily", parameters={"source_options": {"rows": 20_000}})
    success = 'flows_last_success_timestamp_seconds{deployment="synthetic-daily"}'
    first_success = scraped.until(f"count({success})", 1) and scraped.value(success)
    assert first_success is not None
    before = synthetic_counts(duck)

    # killed during load: the retry finishes the package the dead attempt left
    synthetic_killed_in_load(client, 120_000)
    after = synthetic_counts(duck)

    failed = wait(
        client,
        start(
            client, "backfill", parameters={"start_date": "2024-02-10", "end_date": "2024-02-01"}
        ).id,
    )
    assert failed.state is not None and failed.state.type == StateType.FAILED

    finished = 'flows_flow_runs_finished_total{deployment="backfill",state="Failed"}'
    assert scraped.until(finished, 1) == 1
    rows = f"flows_rows_loaded_total{{{SYNTHETIC},table=%r}}"
    assert scraped.until(rows % "events", after["events"]) == after["events"]
    assert scraped.value(rows % "events__tags") == after["tags"]
    assert scraped.value(f"flows_resumes_total{{{SYNTHETIC}}}") == 1
    # the killed run's rows were all in the package it left: none was extracted again
    not_again = (after["events"] - before["events"]) + (after["tags"] - before["tags"])
    assert scraped.value(f"flows_rows_not_extracted_again_total{{{SYNTHETIC}}}") == not_again
    killed = f'sum(flows_attempts_total{{{SYNTHETIC},outcome="killed"}})'
    assert scraped.value(killed) == 1
    assert scraped.value(f"sum(flows_retries_total{{{SYNTHETIC}}})") == 1
    # the retry took the lease the killed attempt left; every attempt that ran wrote snapshots
    assert scraped.value(f"flows_lease_takeovers_total{{{SYNTHETIC}}}") == 1
    assert (scraped.value(f"flows_snapshot_bytes_total{{{SYNTHETIC}}}") or 0) > 0
    completed = 'flows_flow_runs_finished_total{deployment="synthetic-daily",state="Completed"}'
    assert scraped.value(completed) == 2
    # freshness advanced with the second success
    second_success = scraped.value(success)
    assert second_success is not None and second_success > first_success
    assert scraped.value(f"time() - {success}") < 120
    assert (
        scraped.value('flows_deployment_expected_interval_seconds{deployment="synthetic-daily"}')
        == 86400
    )
    # the pool and its worker, as the API sees them
    assert scraped.value(f'flows_workers{{pool="{stack.pool}",status="online"}}') == 1
    assert scraped.value(f'flows_work_pool_slots_used{{pool="{stack.pool}"}}') == 0
    assert scraped.value("flows_exporter_api_up") == 1


def test_every_dashboard_panel_returns_data(scraped: Prometheus) -> None:
    """Runs after the flow runs above: each panel's query parses and has samples. The one
    exception is the memory limit where this machine's flow runs have none (the local stack
    runs them as plain processes; a pod always has one)."""
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(queries) >= 10
    empty = [q for q in queries if not scraped.query(q)]
    if container_limits().memory_limit is None:
        empty.remove("max by (deployment, pipeline) (flows_attempt_memory_limit_bytes)")
    assert empty == []


def test_the_alert_rules_load_and_the_failure_alert_fires(scraped: Prometheus) -> None:
    """The rules file the chart ships loads into a real Prometheus; the failed backfill
    above fires its alert there (promtool's unit tests cover each alert both ways)."""
    import urllib.request

    with urllib.request.urlopen(f"{scraped.url}/api/v1/rules", timeout=10) as answer:
        groups = json.load(answer)["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules and all(r["health"] == "ok" for r in rules), rules
    fired = scraped.until(
        'count(ALERTS{alertname="FlowsDeploymentFailed",deployment="backfill"})', 1
    )
    assert fired == 1


def test_a_killed_and_resumed_run_is_one_lineage_run(
    stack: LocalStack, client: SyncPrefectClient, lineage_events: tuple[str, list[dict[str, Any]]]
) -> None:
    duck = warehouse(stack.root / "home", "synthetic")
    before = synthetic_counts(duck)
    run = synthetic_killed_in_load(client, 200_000)
    after = synthetic_counts(duck)
    events = [
        e
        for e in lineage_events[1]
        if e["run"].get("facets", {}).get("parent", {}).get("run", {}).get("runId") == str(run.id)
    ]
    # the killed attempt started the run; the retry, in a fresh working dir, continued it
    assert [e["eventType"] for e in events] == ["START", "RUNNING", "COMPLETE"]
    assert len({e["run"]["runId"] for e in events}) == 1
    parent = events[0]["run"]["facets"]["parent"]
    assert parent["job"]["name"] == client.read_flow(run.flow_id).name
    complete = events[-1]
    assert complete["job"]["name"] == "synthetic"
    assert "events" in {i["name"] for i in complete["inputs"]}
    rows = {
        o["name"]: o["outputFacets"]["outputStatistics"]["rowCount"] for o in complete["outputs"]
    }
    assert rows == {
        "synthetic.events": after["events"] - before["events"],
        "synthetic.events__tags": after["tags"] - before["tags"],
    }
    columns = {f["name"] for o in complete["outputs"] for f in o["facets"]["schema"]["fields"]}
    assert {"id", "_dlt_id"} <= columns


def test_every_lineage_event_meets_the_spec_and_parses_back(
    lineage_events: tuple[str, list[dict[str, Any]]],
) -> None:
    """Every event the module's runs sent (the completed, failed and killed runs above)."""
    events = lineage_events[1]
    assert len(events) >= 6
    assert [(e["eventType"], p) for e in events for p in spec_problems(e)] == []
    for event in events:
        parse(event)
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
    # one START and one terminal event per run, the terminal one last
    for states in runs.values():
        assert states[0] == "START" and states.count("START") == 1, states
        assert states[-1] in ("COMPLETE", "FAIL") and states.count(states[-1]) == 1, states
