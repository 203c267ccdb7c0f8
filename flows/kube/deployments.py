"""`flows deploy`: `prefect deploy --all`, then each deployment it wrote merged with what an
operator changed since the previous release (flows/kube/release.py).

What a deployment's release settings are: each job variable (`job_variables.<name>`), its
concurrency limit and whether it is paused. Precedence, lowest first: the pool template's
defaults < prefect.yaml's job variables (and the release's own `--release-job-variables`,
the chart's `deployFlows.jobVariables`) < an operator's tuning (`flows tune --apply`, the UI)
< a flow run's own job variables. A release that changes a setting in prefect.yaml wins
over an earlier tuning of that setting, and only of that one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from flows.errors import ConfigError
from flows.kube.release import describe, merge_object, record_name

JOB_VARIABLE = "job_variables."
# `prefect deploy` stamps `updated` on the server; a hook and its server may disagree a little
CLOCK_MARGIN = timedelta(minutes=1)


def settings(deployment: Any) -> dict[str, Any]:
    """A deployment's release settings, flat."""
    found = {JOB_VARIABLE + k: v for k, v in (deployment.job_variables or {}).items()}
    limit = deployment.global_concurrency_limit
    found["concurrency_limit"] = limit.limit if limit is not None else None
    found["paused"] = bool(deployment.paused)
    return found


def as_update(merged: Mapping[str, Any]) -> Any:
    from prefect.client.schemas.actions import DeploymentUpdate

    return DeploymentUpdate(
        job_variables={
            k[len(JOB_VARIABLE) :]: v for k, v in merged.items() if k.startswith(JOB_VARIABLE)
        },
        concurrency_limit=merged.get("concurrency_limit"),
        paused=bool(merged.get("paused", False)),
    )


def project_deployments(project: Path) -> set[str]:
    """The deployment names prefect.yaml declares."""
    declared = yaml.safe_load((project / "prefect.yaml").read_text()) or {}
    return {str(d["name"]) for d in declared.get("deployments") or [] if d.get("name")}


def read_release_job_variables(path: Path | None) -> dict[str, dict[str, Any]]:
    """`--release-job-variables FILE`: {"FLOW/DEPLOYMENT" or "DEPLOYMENT": {variable: value}},
    JSON or YAML: job variables that are part of the release (GitOps tuning)."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"--release-job-variables {path}: {err}") from err
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise ConfigError(
            f"--release-job-variables {path}: expected a mapping of deployment names to "
            'job-variable mappings, e.g. {"orders/orders-daily": {"memory_limit": "3Gi"}}'
        )
    return {str(k): dict(v) for k, v in loaded.items()}


def deploy(project: Path, env: dict[str, str], overrides: dict[str, dict[str, Any]]) -> int:
    """Runs `prefect deploy --all` in `project`, then merges; prints a line per deployment."""
    from prefect.client.orchestration import get_client

    names = project_deployments(project)
    unknown = {key for key in overrides if key.rpartition("/")[2] not in names}
    if unknown:  # before anything is deployed
        raise ConfigError(
            f"--release-job-variables names deployments {project / 'prefect.yaml'} does not "
            f"declare: {', '.join(sorted(unknown))}"
        )
    with get_client(sync_client=True) as client:
        before = {d.id: d for d in client.read_deployments()}
        started = datetime.now(UTC) - CLOCK_MARGIN
        code = subprocess.call(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
            cwd=project,
            env=env,
        )
        if code != 0:
            return code
        written = [
            d
            for d in client.read_deployments()
            if d.name in names and d.updated is not None and d.updated >= started
        ]
        unknown = (
            set(overrides)
            - {d.name for d in written}
            - {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in written}
        )
        for deployment in written:  # merged even so: an operator's changes come back
            print(merge_deployment(client, deployment, before.get(deployment.id), overrides))
    if unknown:  # a FLOW/ part no deployment has: known only once deployed
        raise ConfigError(
            f"--release-job-variables names deployments this project does not have: "
            f"{', '.join(sorted(unknown))} (the others were applied)"
        )
    return 0


def merge_deployment(
    client: Any, written: Any, before: Any | None, overrides: dict[str, dict[str, Any]]
) -> str:
    flow = client.read_flow(written.flow_id).name
    full_name = f"{flow}/{written.name}"
    release = settings(written)
    for key in (written.name, full_name):  # the full name wins
        release.update({JOB_VARIABLE + k: v for k, v in overrides.get(key, {}).items()})
    live = settings(before) if before is not None else None
    merge = merge_object(client, record_name("deployment", str(written.id)), release, live)
    if merge.merged != settings(written):
        client.update_deployment(written.id, as_update(merge.merged))
    return describe(f"deployment {full_name}", merge, live or {})
