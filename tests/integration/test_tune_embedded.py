"""`flows tune` on the embedded default: no server configured, Prefect's ephemeral API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import embedded_env

RUN = "from flows.prefect.flows import synthetic_daily; print(synthetic_daily({'rows': 2000}))"


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
    records = _py(
        env,
        "-c",
        "from prefect.client.orchestration import get_client\n"
        "from flows.prefect.records import read_records\n"
        "with get_client(sync_client=True) as c:\n"
        "    print(sorted((r.outcome, r.attempt) for r in read_records(c, 'synthetic-daily', 9)))",
    )
    assert records.stdout.strip().splitlines()[-1] == (
        "[('completed', 1), ('completed', 1), ('config-error', 1)]"
    ), records.stderr[-2000:]

    tune = _py(env, "-m", "flows", "tune", "synthetic-daily")
    assert tune.returncode == 0, tune.stderr[-3000:]
    assert "2 run records" in tune.stdout and "memory_limit" in tune.stdout
    no_apply = _py(env, "-m", "flows", "tune", "synthetic-daily", "--apply", "--yes")
    assert no_apply.returncode == 1
    assert "is not a deployment: nothing to apply to" in no_apply.stderr

    # with a deployment: FLOW/DEPLOYMENT (Prefect's own naming) and the bare name both work
    made = _py(
        env,
        "-c",
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    flow = c.read_flow_by_name('synthetic-daily')\n"
        "    c.create_deployment(\n"
        "        flow.id, 'synthetic-daily', job_variables={'memory_limit': '1Gi'})",
    )
    assert made.returncode == 0, made.stderr[-2000:]
    for name in ("synthetic-daily/synthetic-daily", "synthetic-daily"):
        shown = _py(env, "-m", "flows", "tune", name)
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert "2 run records" in shown.stdout
        assert "memory_limit            1Gi" in shown.stdout  # the deployment's current value
    missing = _py(env, "-m", "flows", "tune", "synthetic-daily/nope")
    assert missing.returncode == 1 and "no deployment 'synthetic-daily/nope'" in missing.stderr
