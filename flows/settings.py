"""Where the platform keeps things on a laptop, and the dlt settings it runs with.

Everything can be overridden by explicit dlt config (env, config.toml, secrets.toml).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dlt

# Measured (FACTS.md, tests/benchmarks): dlt's default DuckDB loader format takes ~9 GB and
# 195 s for 1M rows; parquet takes a few hundred MB. Formats are chosen per destination.
LOADER_FILE_FORMATS: Mapping[str, str] = {"duckdb": "parquet", "filesystem": "parquet"}

# dlt config keys the platform sets unless the user configured them.
PLATFORM_DEFAULTS: Mapping[str, str] = {
    # bounded files: many load jobs (fine-grained resume) and bounded memory per writer
    "data_writer.buffer_max_items": "5000",
    "data_writer.file_max_items": "100000",
    # arrow items carry the load id too, so a partly loaded package can be removed
    "normalize.parquet_normalizer.add_dlt_load_id": "true",
    # completed job files are not needed once the package is loaded
    "load.delete_completed_jobs": "true",
    # no network calls to dlt's telemetry endpoint
    "runtime.dlthub_telemetry": "false",
}

# Per destination, on top of PLATFORM_DEFAULTS and the adaptive settings. DuckDB runs each
# load statement on all its own threads and serialises writers, so dlt's 20 concurrent load
# jobs only multiply memory: `pipeline.run()` of 1M synthetic rows peaked at 615 MB with 20
# workers and 275 MB with 1, in 55.6 s and 56.7 s (a bench_state run; now tests/benchmarks).
DESTINATION_DEFAULTS: Mapping[str, Mapping[str, str]] = {"duckdb": {"load.workers": "1"}}


def config_value(key: str) -> str | None:
    """A dlt config value as text, or None when no provider has it."""
    value: Any = dlt.config.get(key)
    return None if value is None else str(value)


def flows_home() -> Path:
    """Root of the embedded default: state store, pipelines dir and DuckDB files."""
    return Path(os.environ.get("FLOWS_HOME", ".flows")).resolve()


def default_pipelines_dir() -> Path:
    configured = config_value("pipelines_dir")
    return Path(configured) if configured else flows_home() / "pipelines"


def default_state_url() -> str:
    return config_value("state.url") or f"file://{flows_home() / 'state'}"


def apply_platform_defaults(
    destination: str | None = None, pipeline_name: str | None = None, adaptive: bool | None = None
) -> dict[str, str]:
    """Sets each platform default as an env var unless dlt config already has a value.

    With a container memory limit (and unless FLOWS_ADAPTIVE=false), buffer sizes, file
    rotation and worker counts are sized to fit it (see sizing.py). `destination` (a dlt
    destination name) adds its DESTINATION_DEFAULTS, scoped to `pipeline_name` when given
    (`<PIPELINE>__LOAD__WORKERS`), so that they win over the adaptive values and do not
    leak into the next pipeline run in the same process. Returns the env vars it set.
    """
    if adaptive is None:
        adaptive = os.environ.get("FLOWS_ADAPTIVE", "true").lower() not in ("0", "false", "no")
    wanted = dict(PLATFORM_DEFAULTS)
    if adaptive:
        from flows.resources import container_limits, effective_cpus
        from flows.sizing import adaptive_settings

        limits = container_limits()
        loader_format = (
            config_value(f"pipelines.{pipeline_name}.loader_file_format") if pipeline_name else None
        ) or LOADER_FILE_FORMATS.get(destination or "")
        wanted.update(adaptive_settings(limits, effective_cpus(limits), loader_format))
    per_destination = DESTINATION_DEFAULTS.get(destination or "", {})
    user_set = {
        key for key in [*wanted, *per_destination] if _configured_by_user(key, pipeline_name)
    }
    applied: dict[str, str] = {}
    for key, value in wanted.items():
        if key not in user_set:
            applied.update(_set_env(key, value))
    for key, value in per_destination.items():
        if key not in user_set:
            applied.update(_set_env(f"{pipeline_name}.{key}" if pipeline_name else key, value))
    return applied


# env vars this module set, so that a later call does not take them for user config
_platform_env: dict[str, str] = {}


def _env_key(key: str) -> str:
    return key.upper().replace(".", "__")


def _configured_by_user(key: str, pipeline_name: str | None) -> bool:
    keys = [key, f"{pipeline_name}.{key}"] if pipeline_name else [key]
    return any(
        config_value(k) is not None and _platform_env.get(_env_key(k)) != config_value(k)
        for k in keys
    )


def _set_env(key: str, value: str) -> dict[str, str]:
    env_key = _env_key(key)
    os.environ[env_key] = _platform_env[env_key] = value
    return {env_key: value}
