"""Errors no retry can fix end the run at once, everywhere (flows/errors.py decides by type):
a wrong API token, a destination typo, a wrong PostgreSQL password, the user's own terminal
exceptions. Real servers: a bearer-auth HTTP API on loopback that counts requests, the
PostgreSQL fixture, Prefect's server (the embedded default) for `@dlt_task`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from devstack.postgres import Postgres
from flows.durable.runner import RunCallbacks, runner
from flows.errors import EXIT_CONFIG, LoginRefused, cause_chain, is_terminal, one_line
from tests.integration.helpers import embedded_env, run_cli
from tests.integration.shop_api import ShopApi

API_TOKEN = "s3cret"

# a user's own source: dlt's REST API source with bearer auth, as dlt's docs declare it
ORDERS_API = """
import dlt
from dlt.sources.rest_api import rest_api_resources


@dlt.source(name="orders_api", section="orders_api")
def orders(base_url=dlt.config.value, token=dlt.secrets.value):
    yield from rest_api_resources({
        "client": {
            "base_url": base_url,
            "auth": {"type": "bearer", "token": token},
            "paginator": {"type": "page_number", "base_page": 1, "page_param": "page",
                          "total_path": "total_pages"},
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge",
                              "endpoint": {"data_selector": "data"}},
        "resources": [{"name": "items", "endpoint": {"path": "items"}}],
    })
"""


@pytest.fixture
def project(tmp_path: Path, api: ShopApi) -> dict[str, str]:
    """The user's source module on the path, declared as pipeline `orders` by env."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "orders_api.py").write_text(ORDERS_API)
    return {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), *sys.path]),
        "FLOWS_HOME": str(tmp_path / "home"),
        "PIPELINES__ORDERS__SOURCE": "orders_api:orders",
        "PIPELINES__ORDERS__DATASET_NAME": "orders",
        "SOURCES__ORDERS_API__BASE_URL": api.url,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }


def test_right_token_loads(project: dict[str, str], api: ShopApi) -> None:
    result = run_cli(["run", "orders"], {**project, "SOURCES__ORDERS_API__TOKEN": API_TOKEN})
    assert result.code == 0, result.stderr[-2000:]
    assert api.refused == 0 and api.requests["/items"] == 3  # 250 items, 100 a page


def test_wrong_token_fails_after_one_request(project: dict[str, str], api: ShopApi) -> None:
    result = run_cli(["run", "orders"], {**project, "SOURCES__ORDERS_API__TOKEN": "wrong"})
    assert result.code == 1, result.stderr[-2000:]
    assert api.refused == 1, "a 401 is not worth a second request"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "401" in errors[0] and f"{api.url}items" in errors[0], errors


def test_destination_typo_exits_2_naming_setting_and_valid_names(
    project: dict[str, str], api: ShopApi
) -> None:
    env = {**project, "SOURCES__ORDERS_API__TOKEN": API_TOKEN, "PIPELINES__DESTINATION": "duckbd"}
    result = run_cli(["run", "orders"], env)
    assert result.code == EXIT_CONFIG, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "PIPELINES__DESTINATION" in lines[0] and "'duckbd'" in lines[0], lines
    assert "duckdb, " in lines[0] and "postgres" in lines[0], lines
    assert api.requests == {} and api.refused == 0  # nothing ran
    assert not (Path(project["FLOWS_HOME"]) / "warehouse").exists()  # nothing written


class Retries(RunCallbacks):
    def __init__(self) -> None:
        self.retried: list[str] = []

    def on_retry(self, pipeline: Any, step: str, attempt: int, error: BaseException) -> None:
        self.retried.append(step)


class QuotaExceeded(Exception):
    """A user's own error, marked terminal through FLOWS_TERMINAL_ERRORS."""


@dlt.resource
def over_quota() -> Iterator[dict[str, int]]:
    raise QuotaExceeded("the API's monthly quota is used up")
    yield {}


def retried_steps(tmp_path: Path, name: str) -> list[str]:
    """The steps the runner retried on a pipeline whose extract raises QuotaExceeded."""
    pipeline = dlt.pipeline(
        name,
        destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
        dataset_name=f"{name}_data",
        pipelines_dir=str(tmp_path / name),
    )
    retries = Retries()
    with pytest.raises(Exception, match="monthly quota"):
        runner(
            pipeline,
            retry_pipeline_steps=["extract"],
            callbacks=[retries],
            state_url=(tmp_path / "state").as_uri(),
        ).run(over_quota())
    return retries.retried


def test_user_marked_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert retried_steps(tmp_path, "unmarked") == ["extract", "extract"]  # 3 tries
    monkeypatch.setenv("FLOWS_TERMINAL_ERRORS", f"{__name__}.QuotaExceeded")
    assert retried_steps(tmp_path, "marked") == []


def test_wrong_postgres_password_is_not_retried(postgres: Postgres, tmp_path: Path) -> None:
    bad = postgres.dsn().replace(f":{postgres.password}@", ":wrong@")
    pipeline = dlt.pipeline(
        "pg_login",
        destination=dlt.destinations.postgres(credentials=bad),
        dataset_name="pg_login",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    retries = Retries()
    with pytest.raises(Exception) as caught:
        runner(
            pipeline,
            retry_pipeline_steps=["extract", "normalize", "load"],
            callbacks=[retries],
            state_url=(tmp_path / "state").as_uri(),
        ).run([{"id": 1}], table_name="t")
    assert retries.retried == []
    assert is_terminal(caught.value)
    refused = next(e for e in cause_chain(caught.value) if isinstance(e, LoginRefused))
    assert refused.sqlstate == "28P01"
    line = one_line(caught.value)
    assert "28P01" in line and repr(postgres.user) in line, line


FLOW = """
import json, sys
from prefect import flow
from prefect.client.orchestration import get_client
from flows import dlt_task
from orders_api import orders

@dlt_task(pipeline="orders", retries=3, retry_delay_seconds=0)
def load():
    return orders()

@flow
def run():
    state = load(return_state=True)
    with get_client(sync_client=True) as client:
        counts = [r.run_count for r in client.read_task_runs()]
    return {"ok": state.is_completed(), "message": state.message, "counts": counts}

print("RESULT " + json.dumps(run()))
"""


def test_wrong_token_under_dlt_task_is_one_attempt(
    project: dict[str, str], api: ShopApi, tmp_path: Path
) -> None:
    env = embedded_env(tmp_path, **project, SOURCES__ORDERS_API__TOKEN="wrong")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FLOW)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    result = json.loads(line[len("RESULT ") :])
    assert result["ok"] is False
    assert result["counts"] == [1], result  # Prefect's retries=3 not used
    assert api.refused == 1
    assert "401" in result["message"] and f"{api.url}items" in result["message"], result
