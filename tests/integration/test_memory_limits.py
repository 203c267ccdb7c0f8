"""Adaptive settings in a real 512 MiB memory cgroup: dlt's defaults are OOM-killed, the
platform's adaptive settings load the same rows with the same loader format."""

from __future__ import annotations

import sys
from pathlib import Path

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
