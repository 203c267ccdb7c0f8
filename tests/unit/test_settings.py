"""Platform defaults: the last provider in dlt's chain, per destination where it matters."""

from __future__ import annotations

import os
from collections.abc import Iterator

import dlt
import pytest

from flows.settings import apply_platform_defaults, config_value, platform_provider


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
