"""The example user project (examples/shop_project) and the example package
(examples/shop_customers) on the embedded default, against a real paginated HTTP API on
loopback: `flows run`, a kill -9 during load, changed items, `@dlt_task` in a flow, and the
dlt+ docs' `runner(...)` snippet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import KILLER, duck, warehouse
from tests.integration.shop_api import ShopApi

ROOT = Path(__file__).parents[2]
PROJECT = ROOT / "examples" / "shop_project"
PACKAGE = ROOT / "examples" / "shop_customers"


@pytest.fixture(scope="module", autouse=True)
def example_package_installed() -> None:
    """scripts/bootstrap.sh installs it; a venv made otherwise gets it here."""
    if not any(ep.name == "shop_customers" for ep in entry_points(group="flows.pipelines")):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(PACKAGE)],
            check=True,
        )


@pytest.fixture
def shop() -> Iterator[ShopApi]:
    api = ShopApi(items=1000).start()
    yield api
    api.stop()


def env_for(tmp_path: Path, shop: ShopApi, **extra: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWS_", "STATE__", "PREFECT_API", "DESTINATION__", "PIPELINES__"))
    }
    return {
        **clean,
        "FLOWS_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # two cores shared by several test runs: the embedded server may start slowly
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SOURCES__SHOP_API__BASE_URL": shop.url,
        "SOURCES__SHOP_CUSTOMERS__BASE_URL": shop.url,
        **extra,
    }


def run(
    args: list[str], env: dict[str, str], kill_at: str | None = None, cwd: Path = PROJECT
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(KILLER), kill_at] if kill_at else [sys.executable, "-m", "flows"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def items_in(path: Path) -> list[tuple[Any, ...]]:
    with duck(path) as con:
        rows = con.sql(
            "SELECT id, name, price, strftime(updated_at, '%Y-%m-%dT%H:%M:%SZ') FROM shop.items"
        ).fetchall()
    return sorted(tuple(r) for r in rows)


def test_flows_run_loads_the_servers_items_then_merges_exactly_the_changed_ones(
    tmp_path: Path, shop: ShopApi
) -> None:
    env = env_for(tmp_path, shop)
    listed = run(["pipelines"], env)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("shop_items "))
    assert str(PROJECT / ".dlt" / "config.toml") in line and "shop_project.sources:shop_api" in line

    first = run(["run", "shop_items", "--json", "--pipelines-dir", str(tmp_path / "pod1")], env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout)["loaded_rows"]["items"] == 1000
    assert items_in(warehouse(tmp_path / "home", "shop_items")) == shop.rows()

    changed = [3, 50, 51, 400, 999, 1000, 7]
    shop.touch(changed)
    added = shop.add(5)
    second = run(["run", "shop_items", "--json", "--pipelines-dir", str(tmp_path / "pod2")], env)
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(second.stdout)
    # only what changed came over (the cursor came back from the state store, pod2 is empty)
    assert report["extracted_rows"]["items"] == len(changed) + len(added)
    assert items_in(warehouse(tmp_path / "home", "shop_items")) == shop.rows()


def test_killed_during_load_a_fresh_process_resumes_without_extracting_again(
    tmp_path: Path, shop: ShopApi
) -> None:
    env = env_for(
        tmp_path,
        shop,
        DATA_WRITER__FILE_MAX_ITEMS="200",  # several load jobs to die between
        STATE__LOAD_SNAPSHOT_INTERVAL="0",
        LOAD__WORKERS="1",
    )
    killed = run(
        ["run", "shop_items", "--pipelines-dir", str(tmp_path / "pod1")], env, "load-first"
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    served = shop.requests["/items"]

    resumed = run(["run", "shop_items", "--json", "--pipelines-dir", str(tmp_path / "pod2")], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert report["resume"]["normalized"], report["resume"]
    assert report["extracted_rows"].get("items", 0) == 0
    # one request for the cursor's page (nothing newer), not the 10 pages again
    assert shop.requests["/items"] - served == 1
    assert items_in(warehouse(tmp_path / "home", "shop_items")) == shop.rows()
    with duck(warehouse(tmp_path / "home", "shop_items")) as con:
        loads = con.sql("SELECT COUNT(*), COUNT(DISTINCT load_id) FROM shop._dlt_loads").fetchall()
    assert loads[0][0] == loads[0][1]


def test_pipeline_declared_by_an_installed_packages_entry_point(
    tmp_path: Path, shop: ShopApi
) -> None:
    env = env_for(tmp_path, shop)
    elsewhere = tmp_path / "anywhere"
    elsewhere.mkdir()
    listed = run(["pipelines"], env, cwd=elsewhere)
    line = next(x for x in listed.stdout.splitlines() if x.startswith("shop_customers "))
    assert "entry point shop_customers" in line and "of shop-customers" in line
    result = run(["run", "shop_customers", "--json"], env, cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    with duck(warehouse(tmp_path / "home", "shop_customers")) as con:
        rows = con.sql("SELECT id, email, country FROM shop_customers.customers").fetchall()
    assert sorted(rows) == [(c["id"], c["email"], c["country"]) for c in shop.customers]


def flow_call(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_dlt_task_in_a_flow_on_the_embedded_default(tmp_path: Path, shop: ShopApi) -> None:
    env = env_for(tmp_path, shop)
    code = "from shop_project.flows import shop_daily; print('RESULT', shop_daily())"
    first = flow_call(code, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "'rows': {'items': 1000}" in first.stdout
    assert items_in(warehouse(tmp_path / "home", "shop_items")) == shop.rows()
    shop.touch([10, 20, 30])
    second = flow_call(code, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "'rows': {'items': 3}" in second.stdout
    assert items_in(warehouse(tmp_path / "home", "shop_items")) == shop.rows()


def test_dlt_plus_snippet_twice_in_empty_working_dirs(tmp_path: Path, shop: ShopApi) -> None:
    snippet_db = tmp_path / "snippet.duckdb"
    env = env_for(tmp_path, shop, DESTINATION__DUCKDB__CREDENTIALS=str(snippet_db))
    code = (
        "from shop_project.snippet import shop_snippet\n"
        f"print('RESULT', __import__('json').dumps(shop_snippet({shop.url!r})))"
    )

    def result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        return dict(json.loads(line[len("RESULT ") :]))

    first = result(flow_call(code, env))
    assert first["type"] == "LoadInfo" and len(first["loads_ids"]) == 1
    assert first["extracted"] == {"items": 1000}
    shop.add(25)
    second = result(flow_call(code, env))
    assert second["type"] == "LoadInfo" and len(second["loads_ids"]) == 1
    assert second["extracted"] == {"items": 25}  # only the new items: state came back
    with duck(snippet_db) as con:
        assert con.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM shop.items").fetchall() == [
            (1025, 1025)
        ]
    # the user's PrefectCollector wrote the progress, summaries and the final reports
    keys = flow_call(
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    found = c.read_artifacts()\n"
        "    print('KEYS', sorted({a.key for a in found if a.key}))\n"
        "    reports = [a.description for a in found if a.key == 'shop-snippet-report']\n"
        "    print('REPORTS', sorted(reports))",
        env,
    )
    assert keys.returncode == 0, keys.stderr[-2000:]
    listed = next(x for x in keys.stdout.splitlines() if x.startswith("KEYS "))
    for key in ("shop-snippet-extract-progress", "shop-snippet-load-summary"):
        assert key in listed, listed
    reports = next(x for x in keys.stdout.splitlines() if x.startswith("REPORTS "))
    assert reports == (
        "REPORTS ['shop_snippet: completed, 1,000 rows', 'shop_snippet: completed, 25 rows']"
    ), reports


def test_flows_run_module_function_runs_an_undeclared_source_ad_hoc(
    tmp_path: Path, shop: ShopApi
) -> None:
    env = env_for(tmp_path, shop)
    args = ["run", "shop_project.sources:shop_api", "--name", "adhoc_shop", "--dataset", "adhoc"]
    result = run([*args, "--destination", "duckdb", "--json"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["pipeline"], report["dataset"], report["destination"]) == (
        "adhoc_shop",
        "adhoc",
        "duckdb",
    )
    with duck(warehouse(tmp_path / "home", "adhoc_shop")) as con:
        assert con.sql("SELECT COUNT(DISTINCT id), COUNT(*) FROM adhoc.items").fetchall() == [
            (1000, 1000)
        ]
    refused = run(["run", "shop_items", "--dataset", "other"], env)
    assert refused.returncode == 2 and "are for module:function" in refused.stderr
