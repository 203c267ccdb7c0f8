"""The local stack the fan-out tests and benchmark run on: the pipelines of
`fanout_sources.py` declared in the worker's env, PostgreSQL as their destination, and a pool
limit with room for a parent and its parts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun

from devstack.ports import free_port
from devstack.stack import PROJECT_DIR, LocalStack
from tests.integration.helpers import start, wait
from tests.integration.paged_api import PagedApi

POOL_LIMIT = 6  # a parent and four parts, and one to spare


def declarations(api: PagedApi, stack: LocalStack) -> dict[str, str]:
    env = {"FANOUT_API_URL": api.url, "FANOUT_SHOP_DSN": stack.postgres.dsn("shop")}
    for name, source, dataset in (
        ("paged", "paged_events", "paged"),
        ("shop_tables", "shop_tables", "shop_copy"),
        ("two_writers", "two_writers", "wide"),
    ):
        env[f"PIPELINES__{name.upper()}__SOURCE"] = f"tests.integration.fanout_sources:{source}"
        env[f"PIPELINES__{name.upper()}__DATASET_NAME"] = dataset
        env[f"PIPELINES__{name.upper()}__DESTINATION"] = "postgres"
    return env


def start_stack(root: Path, api: PagedApi) -> LocalStack:
    stack = LocalStack(root, api_port=free_port(avoid_plus=None))
    stack.extra_env.update(
        {
            **declarations(api, stack),
            "DESTINATION__POSTGRES__CREDENTIALS": stack.postgres.dsn("warehouse"),
            "PREFECT_WORKER_QUERY_SECONDS": "2",  # a part run starts soon after it is created
        }
    )
    stack.up()
    stack.postgres.create_database("warehouse")  # before any flow run loads into it
    flows_cli(
        stack,
        "setup",
        "--pool",
        stack.pool,
        "--type",
        "process",
        "--pool-concurrency",
        str(POOL_LIMIT),
    )
    return stack


def flows_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "flows", *args],
        env={**os.environ, **stack.run_env()},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_DIR,
    )
    if result.returncode != 0:
        raise AssertionError(result.stdout[-2000:] + result.stderr[-2000:])
    return result


def run_parent(
    client: SyncPrefectClient, deployment: str, parameters: dict[str, Any], timeout: float = 900
) -> FlowRun:
    return wait(client, start(client, deployment, parameters=parameters).id, timeout)
