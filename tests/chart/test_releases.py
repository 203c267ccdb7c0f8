"""A release changes only what the release changes: the deploy hook, exactly as rendered for
each release, run against a real Prefect server with an operator's changes in between
(install, operator tunes, upgrade, GitOps tuning, rollback).

No Kubernetes API server runs here: what Helm would do is played by rendering each release's
chart with its values and running its hook container's command with its env."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import yaml

from devstack.postgres import Postgres
from tests.chart.chart import REPO, Rendered, named_container
from tests.chart.services import (
    AUTH_STRING,
    PrefectServer,
    api_get,
    release,
    run_deploy_hook,
    run_rendered,
)

pytestmark = pytest.mark.integration

TUNED = {"memory_request": "3Gi", "memory_limit": "3Gi", "cpu_request": "750m"}


def project(folder: Path, products_cpu_limit: str) -> Path:
    """A user's project of two deployments; a release may change products' cpu_limit."""
    folder.mkdir(parents=True, exist_ok=True)
    small = {"image": "{{ $FLOWS_IMAGE }}", "cpu_request": "250m", "cpu_limit": "1"}
    small |= {"memory_request": "512Mi", "memory_limit": "1Gi"}
    declared = {
        "name": "day2",
        "prefect-version": "3.8.8",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}],
        "deployments": [
            {
                "name": "synthetic-daily",
                "version": "{{ $FLOWS_VERSION }}",
                "entrypoint": "flows.prefect.flows:synthetic_daily",
                "tags": ["dlt"],
                "work_pool": {"name": "{{ $FLOWS_WORK_POOL }}", "job_variables": small},
            },
            {
                "name": "products-daily",
                "version": "{{ $FLOWS_VERSION }}",
                "entrypoint": "flows.prefect.flows:products_daily",
                "tags": ["dlt"],
                "work_pool": {
                    "name": "{{ $FLOWS_WORK_POOL }}",
                    "job_variables": {**small, "cpu_limit": products_cpu_limit},
                },
            },
        ],
    }
    (folder / "prefect.yaml").write_text(yaml.safe_dump(declared, sort_keys=False))
    return folder


def deployments(server: PrefectServer) -> dict[str, dict[str, Any]]:
    user, _, password = AUTH_STRING.partition(":")
    found = httpx.post(
        f"{server.api_url}/deployments/filter", json={}, auth=(user, password), timeout=10
    ).json()
    return {d["name"]: d for d in found}


def patch_deployment(server: PrefectServer, deployment_id: str, body: dict[str, Any]) -> None:
    user, _, password = AUTH_STRING.partition(":")
    done = httpx.patch(
        f"{server.api_url}/deployments/{deployment_id}",
        json=body,
        auth=(user, password),
        timeout=10,
    )
    assert done.status_code == 204, done.text


def test_upgrades_keep_operators_changes_and_rollback_restores_the_release(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    env = prefect_server.client_env()
    v1 = release({"image": {"tag": "1.0.0"}, "workPool": {"concurrencyLimit": 4}})
    project_v1 = project(tmp_path / "v1", products_cpu_limit="1")
    run_deploy_hook(v1, prefect_server, project_v1, tmp_path)
    installed = deployments(prefect_server)
    assert installed["synthetic-daily"]["job_variables"]["image"].endswith(":1.0.0")
    assert api_get(prefect_server, "/work_pools/dlt-k8s").json()["concurrency_limit"] == 4

    # the operator: a higher pool limit, a tuned deployment, another one paused
    limit = run_rendered(["prefect", "work-pool", "set-concurrency-limit", "dlt-k8s", "9"], env)
    assert limit.returncode == 0, limit.stdout + limit.stderr
    synthetic = installed["synthetic-daily"]
    patch_deployment(
        prefect_server, synthetic["id"], {"job_variables": {**synthetic["job_variables"], **TUNED}}
    )
    patch_deployment(prefect_server, installed["products-daily"]["id"], {"paused": True})

    # upgrade: a new image, and products' cpu_limit changed in prefect.yaml
    v2 = release({"image": {"tag": "2.0.0"}, "workPool": {"concurrencyLimit": 4}})
    project_v2 = project(tmp_path / "v2", products_cpu_limit="1500m")
    said = run_deploy_hook(v2, prefect_server, project_v2, tmp_path)
    upgraded = deployments(prefect_server)
    assert api_get(prefect_server, "/work_pools/dlt-k8s").json()["concurrency_limit"] == 9
    tuned = upgraded["synthetic-daily"]["job_variables"]
    assert {k: tuned[k] for k in TUNED} == TUNED, "the operator's tuning survives the upgrade"
    assert tuned["image"].endswith(":2.0.0"), "the release's new image is applied"
    assert tuned["memory_limit"] == "3Gi" and tuned["cpu_limit"] == "1"
    products = upgraded["products-daily"]
    assert products["job_variables"]["cpu_limit"] == "1500m", "what the release changed"
    assert products["paused"] is True, "the operator's pause survives"
    assert "kept the operator's" in said and "job_variables.memory_limit" in said, said

    # GitOps: the tuning becomes part of the release (flows tune --values), and the pool
    # limit a release value that changes
    v3 = release(
        {
            "image": {"tag": "2.0.0"},
            "workPool": {"concurrencyLimit": 6},
            "deployFlows": {"jobVariables": {"synthetic-daily": {"memory_limit": "4Gi"}}},
        }
    )
    run_deploy_hook(v3, prefect_server, project_v2, tmp_path)
    gitops = deployments(prefect_server)["synthetic-daily"]["job_variables"]
    assert gitops["memory_limit"] == "4Gi", "the release's own job variable"
    assert gitops["memory_request"] == "3Gi", "the operator's other tuning stays"
    assert api_get(prefect_server, "/work_pools/dlt-k8s").json()["concurrency_limit"] == 6

    # helm rollback to v1: its post-rollback hook is v1's
    run_deploy_hook(v1, prefect_server, project_v1, tmp_path)
    rolled = deployments(prefect_server)
    assert rolled["synthetic-daily"]["job_variables"]["image"].endswith(":1.0.0")
    assert rolled["products-daily"]["job_variables"]["image"].endswith(":1.0.0")
    assert rolled["products-daily"]["job_variables"]["cpu_limit"] == "1"
    assert rolled["synthetic-daily"]["job_variables"]["memory_request"] == "3Gi"
    assert rolled["products-daily"]["paused"] is True


def test_the_deploy_hook_runs_on_rollback(default: Rendered) -> None:
    hook = default.get("Job", "rel-prefect-dlt-deploy-flows")
    phases = set(hook["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert {"post-install", "post-upgrade", "post-rollback"} <= phases


def test_an_unknown_deployment_in_release_job_variables_is_refused(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no-such-deployment": {"memory_limit": "1Gi"}}))
    folder = project(tmp_path / "p", products_cpu_limit="1")
    done = run_rendered(
        ["flows", "deploy", "--project-dir", str(folder), "--release-job-variables", str(bad)],
        {**prefect_server.client_env(), "FLOWS_WORK_POOL": "dlt-k8s", "FLOWS_IMAGE": "x:1"},
        timeout=300,
        cwd=folder,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no-such-deployment" in done.stderr.strip().splitlines()[-1]


def test_a_rollback_across_a_database_migration_is_refused(
    postgres: Postgres, default: Rendered, tmp_path: Path
) -> None:
    """The pre-rollback hook's command, as rendered, against a real PostgreSQL that Prefect
    migrated: it passes at this Prefect's head and refuses (exit 2, one line, nothing
    changed) a database a newer Prefect migrated."""
    hook = named_container(default, "Job", "rel-prefect-dlt-rollback-check", "rollback-check")
    phases = default.get("Job", "rel-prefect-dlt-rollback-check")["metadata"]["annotations"]
    assert phases["helm.sh/hook"] == "pre-rollback"
    database = f"prefect_rollback_{os.getpid()}"
    postgres.create_database(database)
    env = {
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.dsn(database).replace(
            "postgresql://", "postgresql+asyncpg://", 1
        ),
    }
    migrated = run_rendered(["flows", "server-migrate"], env, timeout=300)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert run_rendered(hook["command"], env).returncode == 0

    with psycopg2.connect(postgres.dsn(database)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    for command in (hook["command"], ["flows", "server-migrate"]):
        refused = run_rendered(command, env, timeout=300)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert "f00dfeedbeef" in line and "Roll forward" in line, line
    with psycopg2.connect(postgres.dsn(database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchall() == [("f00dfeedbeef",)], "nothing was migrated"
