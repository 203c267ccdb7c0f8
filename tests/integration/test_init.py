"""`flows init` into an empty folder, then `flows run` of its pipeline on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb


def flows(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWS_", "STATE__"))}
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=cwd,
        env={**clean, "RUNTIME__DLTHUB_TELEMETRY": "false", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_init_then_run_on_the_embedded_default(tmp_path: Path) -> None:
    made = flows(tmp_path, "init", "shop-data")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "shop-data"
    for path in (
        ".dlt/config.toml",
        ".dlt/secrets.toml",
        ".gitignore",
        "prefect.yaml",
        "Dockerfile",
        "README.md",
        "shop_data/sources.py",
        "shop_data/flows.py",
    ):
        assert (project / path).is_file(), path
    assert ".dlt/secrets.toml" in (project / ".gitignore").read_text().splitlines()
    assert "FROM ${PLATFORM_IMAGE}" in (project / "Dockerfile").read_text()
    assert "compileall" in (project / "Dockerfile").read_text()

    listed = flows(project, "pipelines")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("shop_data "))
    assert str(project / ".dlt" / "config.toml") in line

    first = flows(project, "run", "shop_data")
    assert first.returncode == 0, first.stderr[-2000:]
    warehouse = project / ".flows" / "warehouse" / "flows_shop_data.duckdb"
    more = flows(project, "run", "shop_data", SOURCES__SHOP_DATA__ROWS="150")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "rows loaded: items 50" in more.stdout
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM shop_data.items").fetchall() == [
            (150, 150)
        ]

    again = flows(tmp_path, "init", "shop-data")
    assert again.returncode == 2 and "is not empty" in again.stderr
