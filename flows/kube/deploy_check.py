"""`flows deploy` refuses a project whose job_variables Kubernetes would refuse later.

The pool template's JSON schema checks each quantity on its own; a request above its limit
(set in the deployment, or left to the pool's default limit) passes the Prefect server and
fails only when the worker creates the Job. This check runs before `prefect deploy`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from flows.errors import ConfigError
from flows.system.quantities import check_requests_within_limits, template_defaults

ENV_PLACEHOLDER = re.compile(r"{{\s*\$(\w+)\s*}}")

PoolDefaults = Callable[[str], Mapping[str, Any]]


def server_pool_defaults(pool: str) -> Mapping[str, Any]:
    """The defaults of the pool as the server has it; the packaged template's when the pool
    does not exist yet (or no server answers: `prefect deploy` will say so itself)."""
    from flows.kube.pool_template import base_job_template

    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return template_defaults(client.read_work_pool(pool).base_job_template)
    except Exception:
        return template_defaults(base_job_template())


def _expand(text: str) -> str:
    return ENV_PLACEHOLDER.sub(lambda m: os.environ.get(m.group(1), ""), text)


def check_project(project_dir: Path, pool_defaults: PoolDefaults = server_pool_defaults) -> int:
    """Checks every deployment of `project_dir`/prefect.yaml; returns how many it checked."""
    path = project_dir / "prefect.yaml"
    try:
        project = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}") from err
    deployments = project.get("deployments") or []
    for deployment in deployments:
        work_pool = deployment.get("work_pool") or {}
        pool = _expand(str(work_pool.get("name") or ""))
        job_variables = work_pool.get("job_variables") or {}
        where = f"{path.name} deployment {deployment.get('name')!r}"
        check_requests_within_limits(job_variables, pool_defaults(pool), where=where)
    return len(deployments)
