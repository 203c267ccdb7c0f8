"""Under Prefect (the embedded default: ephemeral API), an unreachable state store is
retried and a bad setting is not: both verdicts come from flows/errors.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devstack.ports import free_port
from tests.integration.helpers import embedded_env

FLOW = """
import json
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from flows.prefect.tasks import make_pipeline_task

task = make_pipeline_task("synthetic", retries=1, retry_delay_seconds=0)

@flow(name="classify")
def classify():
    state = task(return_state=True)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    counts = [r.run_count for r in runs]
    return {"ok": state.is_completed(), "message": state.message, "counts": counts}

print("RESULT " + json.dumps(classify()))
"""


def run_flow(tmp_path: Path, **extra: str) -> dict[str, object]:
    env = embedded_env(tmp_path, SOURCES__SYNTHETIC__ROWS="500", **extra)
    result = subprocess.run(
        [sys.executable, "-c", FLOW], env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, result.stderr[-3000:]
    return dict(json.loads(line[len("RESULT ") :]))


def test_unreachable_store_is_retried_by_prefect(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port(avoid_plus=None)}"
    result = run_flow(
        tmp_path,
        STATE__URL="s3://state/state",
        AWS_ENDPOINT_URL=dead,
        AWS_ACCESS_KEY_ID="k",
        AWS_SECRET_ACCESS_KEY="s",
        STATE__RETRY_WINDOW="1",
    )
    assert result["ok"] is False
    assert result["counts"] == [2], result  # the first attempt failed retryably: retried once
    assert "unreachable" in str(result["message"]), result


def test_bad_setting_is_not_retried_by_prefect(tmp_path: Path) -> None:
    result = run_flow(tmp_path, STATE__LEASE_TTL="soon")
    assert result["ok"] is False
    assert result["counts"] == [1], result
    assert "STATE__LEASE_TTL" in str(result["message"]), result
