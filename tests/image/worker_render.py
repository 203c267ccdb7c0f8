"""The Kubernetes worker's Job manifest for a flow run, built by prefect-kubernetes' own code.

    python worker_render.py <flow-run-id> <work-pool-name>

Run inside the platform image with the chart's worker environment (tests/image mounts it
into a container made from the worker Deployment's spec): it does what
`prefect worker start --type kubernetes` does for a flow run up to the API call that would
create the Job: `KubernetesWorkerJobConfiguration.resolve_for_flow_run` (the pool's base job
template, the deployment's and the run's job variables, `prepare_for_flow_run`), then the
auth-string-to-Secret replacement of `KubernetesWorker._create_job`. Prints the manifest as
one line "JOB_MANIFEST <json>".
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect_kubernetes.settings import KubernetesSettings
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

WORKER_NAME = "image-test-worker"


async def render(flow_run_id: UUID, pool_name: str) -> dict[str, Any]:
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        work_pool = await client.read_work_pool(pool_name)
        if work_pool.type != "kubernetes":
            raise SystemExit(f"work pool {pool_name} is of type {work_pool.type}, not kubernetes")
        configuration = await KubernetesWorkerJobConfiguration.resolve_for_flow_run(
            flow_run, client=client, work_pool=work_pool, worker_name=WORKER_NAME
        )
    settings = KubernetesSettings().worker
    if settings.api_auth_string_secret_name and settings.api_auth_string_secret_key:
        worker = KubernetesWorker(work_pool_name=pool_name, name=WORKER_NAME)
        await worker._replace_env_variable_with_secret(
            env_variable_name="PREFECT_API_AUTH_STRING",
            configuration=configuration,
            secret_name=settings.api_auth_string_secret_name,
            secret_key=settings.api_auth_string_secret_key,
        )
    return configuration.job_manifest


def main() -> int:
    manifest = asyncio.run(render(UUID(sys.argv[1]), sys.argv[2]))
    print("JOB_MANIFEST " + json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
