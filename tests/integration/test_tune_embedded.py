"""`flows tune` on the embedded default: no server configured, Prefect's ephemeral API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_tune_works_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "FLOWS_HOME": str(tmp_path / "home"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    run = "from flows.prefect.flows import synthetic_daily; print(synthetic_daily({'rows': 2000}))"
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", run], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
    tune = subprocess.run(
        [sys.executable, "-m", "flows", "tune", "synthetic-daily"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tune.returncode == 0, tune.stderr[-3000:]
    assert "2 run records" in tune.stdout and "memory_limit" in tune.stdout
    no_apply = subprocess.run(
        [sys.executable, "-m", "flows", "tune", "synthetic-daily", "--apply", "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert no_apply.returncode == 1
    assert "is not a deployment: nothing to apply to" in no_apply.stderr
