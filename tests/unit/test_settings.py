"""Platform defaults: set only where dlt config is silent, per destination where it matters."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flows import settings
from flows.settings import apply_platform_defaults, config_value


@pytest.fixture(autouse=True)
def clean_env() -> Iterator[None]:
    """apply_platform_defaults writes os.environ itself: restore it whole afterwards."""
    saved, saved_platform = dict(os.environ), dict(settings._platform_env)
    for key in list(os.environ):
        if key.endswith(("LOAD__WORKERS", "DATA_WRITER__FILE_MAX_ITEMS")):
            del os.environ[key]
    settings._platform_env.clear()
    os.environ["FLOWS_ADAPTIVE"] = "false"
    yield
    os.environ.clear()
    os.environ.update(saved)
    settings._platform_env.clear()
    settings._platform_env.update(saved_platform)


def test_duckdb_loads_with_one_worker_in_its_own_pipeline_only() -> None:
    applied = apply_platform_defaults("duckdb", "events")
    assert applied["EVENTS__LOAD__WORKERS"] == "1"
    assert applied["DATA_WRITER__FILE_MAX_ITEMS"] == "100000"
    assert config_value("events.load.workers") == "1"
    # the next pipeline in the same process, on another destination, keeps dlt's default
    assert "LOAD__WORKERS" not in apply_platform_defaults("postgres", "orders")
    assert config_value("orders.load.workers") is None and config_value("load.workers") is None


def test_platform_values_are_not_mistaken_for_user_config() -> None:
    apply_platform_defaults("duckdb", "events")
    again = apply_platform_defaults("duckdb", "events")
    assert again["EVENTS__LOAD__WORKERS"] == "1" and "DATA_WRITER__FILE_MAX_ITEMS" in again


def test_explicit_config_wins() -> None:
    os.environ["LOAD__WORKERS"] = "4"
    os.environ["EVENTS__DATA_WRITER__FILE_MAX_ITEMS"] = "2000"
    applied = apply_platform_defaults("duckdb", "events")
    assert not any(key.endswith("LOAD__WORKERS") for key in applied)
    assert "DATA_WRITER__FILE_MAX_ITEMS" not in applied
    assert config_value("events.load.workers") is None and config_value("load.workers") == "4"
