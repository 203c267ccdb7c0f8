"""`flows tune` on the embedded default: no server configured, Prefect's ephemeral API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import embedded_env

RUN = "from flows.prefect.flows import synthetic_daily; print(synthetic_daily({'rows': 2000}))"

STEPS = """
import contextlib, io, json
from prefect.client.orchestration import get_client
from flows.cli import main
from flows.prefect.records import read_records

def tune(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["tune", *args])
    return code, out.getvalue(), err.getvalue()

results = {}
with get_client(sync_client=True) as c:
    records = read_records(c, "synthetic-daily", 9)
    results["records"] = sorted((r.outcome, r.attempt) for r in records)
results["tune"] = tune("synthetic-daily")
results["no_apply"] = tune("synthetic-daily", "--apply", "--yes")
with get_client(sync_client=True) as c:
    flow = c.read_flow_by_name("synthetic-daily")
    c.create_deployment(flow.id, "synthetic-daily", job_variables={"memory_limit": "1Gi"})
for name in ("synthetic-daily/synthetic-daily", "synthetic-daily", "synthetic-daily/nope"):
    results["missing" if name.endswith("nope") else name] = tune(name)
print(json.dumps(results))
"""


def _py(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_tune_works_on_the_embedded_default(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    for _ in range(2):
        result = _py(env, "-c", RUN)
        assert result.returncode == 0, result.stderr[-3000:]
    # an attempt refused on its config never ran the pipeline: no retry, and no evidence
    refused = _py({**env, "FLOWS_REQUIRE_PERSISTENT_DESTINATION": "true"}, "-c", RUN)
    assert refused.returncode != 0
    assert "is on the pod's scratch disk" in refused.stdout + refused.stderr
    # the rest in one process: each process on the embedded default starts its own
    # ephemeral Prefect server (10-20 s here); `flows.cli.main` is what `flows tune` runs
    out = _py(env, "-c", STEPS)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["records"] == [["completed", 1], ["completed", 1], ["config-error", 1]]

    code, stdout, stderr = results["tune"]
    assert code == 0, stderr[-3000:]
    assert "2 run records" in stdout and "memory_limit" in stdout
    code, _, stderr = results["no_apply"]
    assert code == 1
    assert "is not a deployment: nothing to apply to" in stderr

    # with a deployment: FLOW/DEPLOYMENT (Prefect's own naming) and the bare name both work
    for name in ("synthetic-daily/synthetic-daily", "synthetic-daily"):
        code, stdout, stderr = results[name]
        assert code == 0, stderr[-3000:]
        assert "2 run records" in stdout
        assert "memory_limit            1Gi" in stdout  # the deployment's current value
    code, _, stderr = results["missing"]
    assert code == 2 and "no deployment 'synthetic-daily/nope'" in stderr


def test_tune_refuses_an_unknown_deployment_as_bad_input(tmp_path: Path) -> None:
    """A deployment that does not exist is bad input: exit 2, one line naming it."""
    # Prefect announces the ephemeral server it starts at INFO; the error is the one line left
    env = {**embedded_env(tmp_path), "PREFECT_LOGGING_LEVEL": "WARNING"}
    out = _py(env, "-m", "flows", "tune", "no-such/deployment")
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.splitlines() == [
        "error: TuneError: no deployment 'no-such/deployment' (FLOW/DEPLOYMENT)"
    ]
