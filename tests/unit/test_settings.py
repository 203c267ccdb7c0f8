"""Platform defaults: the last provider in dlt's chain, per destination where it matters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dlt
import pytest

from flows.config.settings import apply_platform_defaults, config_value, platform_provider


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.endswith(("LOAD__WORKERS", "DATA_WRITER__FILE_MAX_ITEMS")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWS_ADAPTIVE", "false")
    yield
    platform_provider().replace({})


def test_duckdb_loads_with_one_worker_in_its_own_pipeline_only() -> None:
    before = dict(os.environ)
    applied = apply_platform_defaults("duckdb", "events")
    assert applied["events.load.workers"] == "1"
    assert config_value("events.load.workers") == "1"
    assert config_value("data_writer.file_max_items") == "100000"
    assert dict(os.environ) == before  # nothing written to the environment
    # the next pipeline in the same process, on another destination, keeps dlt's default
    apply_platform_defaults("postgres", "orders")
    assert config_value("events.load.workers") is None
    assert config_value("orders.load.workers") is None and config_value("load.workers") is None


def test_platform_provider_is_last_in_the_chain() -> None:
    apply_platform_defaults("duckdb", "events")
    names = [p.name for p in dlt.config.config_providers]
    assert names[-1] == "Platform defaults"
    assert names.count("Platform defaults") == 1
    apply_platform_defaults("duckdb", "events")
    assert [p.name for p in dlt.config.config_providers].count("Platform defaults") == 1


def test_explicit_config_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOAD__WORKERS", "4")
    monkeypatch.setenv("EVENTS__DATA_WRITER__FILE_MAX_ITEMS", "2000")
    apply_platform_defaults("duckdb", "events")
    assert config_value("load.workers") == "4"
    assert config_value("events.data_writer.file_max_items") == "2000"
    assert config_value("data_writer.file_max_items") == "100000"


def test_state_settings_from_env_config_toml_and_secrets_toml(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        '[state]\nlease_ttl = 30\nkeep_generations = 5\nurl = "file:///from/config"\n'
    )
    (tmp_path / ".dlt" / "secrets.toml").write_text("[state]\nretry_attempts = 7\n")
    code = (
        "from flows.state.config import state_config as s\n"
        "c = s()\n"
        "print(c.url, c.lease_ttl, c.keep_generations, c.retry_attempts, "
        "c.load_snapshot_interval)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATE__")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "STATE__LOAD_SNAPSHOT_INTERVAL": "2.5", "STATE__KEEP_GENERATIONS": "4"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # env wins over config.toml; secrets.toml is read too
    assert out.stdout.split() == ["file:///from/config", "30.0", "4", "7", "2.5"]
