"""Adaptive settings in a real 512 MiB memory cgroup: dlt's defaults are OOM-killed, the
platform's adaptive settings load the same rows with the same loader format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cgroups import run_limited
from tests.integration.helpers import KILLER, exact, synthetic_counts

LIMIT = 512 * 2**20
ROWS = 50_000


def test_defaults_are_oom_killed_adaptive_settings_fit(
    flows_env: dict[str, str], tmp_path: Path
) -> None:
    plain, _ = run_limited(
        [
            sys.executable,
            str(KILLER.with_name("plain_dlt.py")),
            str(ROWS),
            str(tmp_path / "plain.duckdb"),
            str(tmp_path / "plain"),
        ],
        LIMIT,
        {"RUNTIME__DLTHUB_TELEMETRY": "false"},
    )
    assert plain.returncode == -9, plain.stderr[-2000:]  # the kernel's OOM killer

    adaptive, peak = run_limited(
        [
            sys.executable,
            "-m",
            "flows",
            "run",
            "synthetic",
            "--json",
            "--pipelines-dir",
            str(tmp_path / "pods"),
        ],
        LIMIT,
        {
            **flows_env,
            "SOURCES__SYNTHETIC__ROWS": str(ROWS),
            # the same loader format as dlt's default: only the adaptive sizing differs
            "PIPELINES__SYNTHETIC__LOADER_FILE_FORMAT": "insert_values",
            "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "adaptive.duckdb"),
        },
    )
    assert adaptive.returncode == 0, adaptive.stderr[-3000:]
    assert 0 < peak <= LIMIT
    counts = synthetic_counts(tmp_path / "adaptive.duckdb")
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS)


# What DuckDB runs with on the connection the platform's settings give dlt: one line of JSON.
THREADS_SEEN = """
import json, sys, dlt
from flows.config.settings import apply_platform_defaults
apply_platform_defaults("duckdb", "threads")
pipeline = dlt.pipeline("threads", pipelines_dir=sys.argv[1], dataset_name="d",
                        destination=dlt.destinations.duckdb(sys.argv[2]))
pipeline.run([{"a": 1}], table_name="t")
with pipeline.sql_client() as client:
    print(json.dumps(client.execute_sql("SELECT current_setting('threads')")[0][0]))
"""


@pytest.mark.parametrize(
    ("limit_mib", "user_config", "threads"),
    [(1024, None, 1), (4096, None, 1), (1024, '{"threads": 2}', 2)],
)
def test_duckdb_runs_one_thread_per_4_gib_of_the_pods_limit_unless_configured(
    tmp_path: Path, limit_mib: int, user_config: str | None, threads: int
) -> None:
    env = {"RUNTIME__DLTHUB_TELEMETRY": "false"}
    if user_config:
        env["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = user_config
    cmd = [sys.executable, "-c", THREADS_SEEN, str(tmp_path / "p"), str(tmp_path / "w.duckdb")]
    proc, _ = run_limited(cmd, limit_mib * 2**20, env, cpus=2.0)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == threads
