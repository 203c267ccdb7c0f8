"""FLOWS_REQUIRE_PERSISTENT_DESTINATION: a DuckDB file on scratch disk is refused at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.errors import EXIT_CONFIG
from flows.pipelines import PipelineSpec
from flows.pipelines.persistence import ScratchDestinationError, refuse_scratch_duckdb

SPEC = PipelineSpec("events", "flows.sources.synthetic:synthetic")


@pytest.fixture(autouse=True)
def no_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default destination: DuckDB under FLOWS_HOME (tests/unit/conftest.py)."""
    for key in (
        "PIPELINES__DESTINATION",
        "DESTINATION__DUCKDB__CREDENTIALS",
        "FLOWS_PERSISTENT_DIRS",
    ):
        monkeypatch.delenv(key, raising=False)


def test_not_required_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWS_REQUIRE_PERSISTENT_DESTINATION", raising=False)
    refuse_scratch_duckdb(SPEC)


def test_required_duckdb_on_scratch_is_refused_a_persistent_mount_or_bucket_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWS_REQUIRE_PERSISTENT_DESTINATION", "true")
    with pytest.raises(ScratchDestinationError, match="scratch disk") as err:
        refuse_scratch_duckdb(SPEC)
    assert err.value.exit_code == EXIT_CONFIG
    monkeypatch.setenv("FLOWS_PERSISTENT_DIRS", str(tmp_path / "home" / "warehouse"))
    refuse_scratch_duckdb(SPEC)
    monkeypatch.delenv("FLOWS_PERSISTENT_DIRS")
    monkeypatch.setenv("PIPELINES__DESTINATION", "filesystem")
    refuse_scratch_duckdb(SPEC)


def test_cli_refuses_before_anything_is_written(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FLOWS_HOME": str(tmp_path / "home"),
        "FLOWS_REQUIRE_PERSISTENT_DESTINATION": "true",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    env.pop("STATE__URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "flows", "run", "synthetic"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "ScratchDestinationError" in result.stderr
    assert not (tmp_path / "home" / "state").exists()
