"""What the Helm chart's pods run besides the worker: wait for the server, create the bucket
of the bundled store, sync the pool's template, and `helm test`'s release check.

Each function returns the lines to print and raises on failure (the CLI turns that into one
`error:` line and an exit code), so the chart keeps no script of its own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from flows.errors import RetryableError

POLL_SECONDS = 3.0


class NotReadyError(RetryableError):
    """A dependency did not come up before the deadline: it may yet (the hook's Job is
    retried, and a later `helm test` may pass)."""


def _auth() -> tuple[str, str] | None:
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if not auth:
        return None
    user, _, password = auth.partition(":")
    return (user, password)


def _api_url() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise ValueError("PREFECT_API_URL is not set")
    return url.rstrip("/")


def _poll(what: str, probe: Callable[[], str | None], timeout: float) -> Iterator[str]:
    """Calls `probe` (None when ready, else why not) until ready or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        problem = probe()
        if problem is None:
            yield f"{what}: ready"
            return
        if time.monotonic() >= deadline:
            raise NotReadyError(f"{what}: not ready after {timeout:g} s ({problem})")
        yield f"{what}: waiting ({problem})"
        time.sleep(POLL_SECONDS)


def wait_for_server(timeout: float) -> Iterator[str]:
    """Until the server's /ready answers 200 (the database is reachable)."""
    url = f"{_api_url()}/ready"

    def probe() -> str | None:
        try:
            status = httpx.get(url, timeout=5).status_code
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {err}"
        return None if status == 200 else f"HTTP {status}"

    yield from _poll(url, probe, timeout)


def create_bucket(bucket: str, timeout: float) -> Iterator[str]:
    """Creates `bucket` on the store at AWS_ENDPOINT_URL unless it exists; waits for the
    store. A HEAD decides: some S3 servers create a bucket on any first write."""
    import botocore.session
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    outcome: list[str] = []

    def probe() -> str | None:
        try:
            s3.head_bucket(Bucket=bucket)
            outcome.append("exists")
            return None
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                s3.create_bucket(Bucket=bucket)
                outcome.append("created")
                return None
            return str(err)
        except BotoCoreError as err:
            return str(err)

    for line in _poll(f"bucket {bucket}", probe, timeout):
        if line.endswith(": ready"):
            line = f"bucket {bucket}: {outcome[-1]}"
        yield line


def sync_work_pool(pool: str, template_path: Path, pool_type: str = "kubernetes") -> str:
    """Makes the pool's base job template the given one, changing nothing else.

    A worker start must not reset what `flows setup` (the pool's one owner) set: concurrency
    limit, paused state, description. `prefect work-pool create --overwrite` sends the whole
    create body and does reset them; an update with only the template does not. A pool that
    does not exist yet is created with the template and nothing else (setup adds the rest).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template: dict[str, Any] = json.loads(template_path.read_text())
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type=pool_type, base_job_template=template)
            )
            return f"work pool {pool!r} created with the template (flows setup sets its limits)"
        if existing.type != pool_type:
            raise ValueError(f"work pool {pool!r} has type {existing.type!r}, not {pool_type!r}")
        if existing.base_job_template == template:
            return f"work pool {pool!r}: template unchanged"
        client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
        return f"work pool {pool!r}: template updated"


def check_release(pool: str) -> Iterator[str]:
    """`helm test`: the server is ready, accepts the auth string, and serves the pool."""
    api = _api_url()
    with httpx.Client(auth=_auth(), timeout=10) as client:
        ready = client.get(f"{api}/ready")
        yield f"GET {api}/ready: HTTP {ready.status_code}"
        if ready.status_code != 200:
            raise NotReadyError("the server is not ready")
        found = client.get(f"{api}/work_pools/{pool}")
        yield f"GET {api}/work_pools/{pool}: HTTP {found.status_code}"
        if found.status_code == 401:
            raise PermissionError("the server rejected the auth string")
        if found.status_code != 200:
            raise LookupError(f"work pool {pool!r} not found")
        body = found.json()
        paused = " (paused)" if body.get("status") == "PAUSED" else ""
        yield f"work pool {pool!r}: type {body.get('type')}{paused}"
