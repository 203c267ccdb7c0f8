"""A deployment's flow run started the way a flow-run pod starts it.

The pod's command is the work pool's `command` (`python -m flows.prefect.pod`, read from the
pool's template); as a reference, Prefect's own default (`prefect flow-run execute`, read
from the worker's base class), which keeps the Prefect CLI up for the whole run and starts a
workspace supervisor before the engine. Both run a real deployment's flow run against the
same Prefect server the flow variants use, pull steps included.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from tests.benchmarks.harness import REPO, Variant

ENTRYPOINT = "flows.prefect.flows:synthetic_daily"  # as prefect.yaml deploys it


def platform_command_line() -> str:
    """The pool's command: what the worker puts in a flow-run pod's `args`."""
    from flows.kube.pool_template import FlowRunVariables

    return str(FlowRunVariables.model_fields["command"].default)


def prefect_command_line() -> str:
    """Prefect's command, which the worker uses when a pool sets none."""
    from prefect.workers.base import BaseJobConfiguration

    return BaseJobConfiguration._base_flow_run_command()


def runnable(command_line: str) -> tuple[str, ...]:
    """The command, its program taken from this interpreter's environment (the image has
    the venv first on PATH; a venv that is not activated is not)."""
    program, *args = shlex.split(command_line)
    beside = Path(sys.executable).with_name(program)
    return (str(beside) if beside.exists() else program, *args)


def deploy(api_url: str) -> UUID:
    """The synthetic-daily deployment with prefect.yaml's pull step (the repository as the
    working directory) and no parameters: the rows come from the sample's environment."""
    from prefect.client.orchestration import SyncPrefectClient

    from flows.prefect.flows import synthetic_daily

    with SyncPrefectClient(api_url) as client:
        flow_id = client.create_flow(synthetic_daily)
        return client.create_deployment(
            flow_id=flow_id,
            name="bench-pod",
            entrypoint=ENTRYPOINT,
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ],
        )


def new_flow_run(api_url: str, deployment_id: UUID) -> Any:
    """A `prepare` hook: a fresh flow run of the deployment for each sample, its id where
    the worker puts it (PREFECT__FLOW_RUN_ID)."""
    from prefect.client.orchestration import SyncPrefectClient

    def prepare(work: Path, env: dict[str, str]) -> None:
        with SyncPrefectClient(api_url) as client:
            run = client.create_flow_run_from_deployment(deployment_id)
        env["PREFECT__FLOW_RUN_ID"] = str(run.id)

    return prepare


def completed_rows(api_url: str) -> Any:
    """A `check` hook: the flow run must have completed and its rows be in the warehouse."""
    import duckdb
    from prefect.client.orchestration import SyncPrefectClient

    def check(env: dict[str, str]) -> dict[str, Any]:
        with SyncPrefectClient(api_url) as client:
            run = client.read_flow_run(UUID(env["PREFECT__FLOW_RUN_ID"]))
        if run.state is None or not run.state.is_completed():
            raise RuntimeError(f"flow run {run.id} ended {run.state}")
        warehouse = env["DESTINATION__DUCKDB__CREDENTIALS"]
        with duckdb.connect(warehouse, read_only=True) as con:
            rows = con.sql("SELECT COUNT(*) FROM synthetic.events").fetchall()[0][0]
        return {"rows": int(rows)}

    return check


def pod_variant(
    name: str, command_line: str, api_url: str, deployment_id: UUID, env: dict[str, str]
) -> Variant:
    """A fresh flow run of the deployment per sample, run by `command_line` as a pod would
    run it, checked to have completed with its rows in the warehouse."""
    return Variant(
        f"{name} ({command_line}) + S3",
        "command",
        env=env,
        prepare=new_flow_run(api_url, deployment_id),
        command=runnable(command_line),
        check=completed_rows(api_url),
    )
