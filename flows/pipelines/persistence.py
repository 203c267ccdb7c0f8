"""Refuses a destination that dies with the pod, where the deployment says data must last.

With `FLOWS_REQUIRE_PERSISTENT_DESTINATION=true` (the chart's production values) a DuckDB
file is refused unless it lies under one of `FLOWS_PERSISTENT_DIRS` (colon-separated mount
points of persistent volumes): on a pod's scratch disk it is lost with the pod.
"""

from __future__ import annotations

from pathlib import Path

from flows.config.platform import platform_config
from flows.config.settings import config_value, flows_home
from flows.errors import ConfigError
from flows.pipelines import PipelineSpec


class ScratchDestinationError(ConfigError):
    """The destination is a file on the pod's scratch disk."""


def persistence_required() -> bool:
    return platform_config().flows_require_persistent_destination


def duckdb_file(spec: PipelineSpec) -> Path | None:
    """The DuckDB file the pipeline writes, None for any other destination."""
    if spec.destination_name() != "duckdb":
        return None
    configured = config_value(f"pipelines.{spec.name}.destination.duckdb.credentials") or (
        config_value("destination.duckdb.credentials")
    )
    if configured and (configured.startswith("md:") or "://" in configured):
        return None
    return Path(configured or flows_home() / "warehouse" / f"flows_{spec.name}.duckdb").resolve()


def refuse_scratch_duckdb(spec: PipelineSpec) -> None:
    if not persistence_required():
        return
    path = duckdb_file(spec)
    if path is None:
        return
    if any(path.is_relative_to(d) for d in platform_config().persistent_dirs()):
        return
    raise ScratchDestinationError(
        f"pipeline {spec.name!r}: DuckDB file {path} is on the pod's scratch disk and is lost "
        "with the pod (FLOWS_REQUIRE_PERSISTENT_DESTINATION=true); set PIPELINES__DESTINATION "
        "(e.g. filesystem with DESTINATION__FILESYSTEM__BUCKET_URL) or put the file under "
        "FLOWS_PERSISTENT_DIRS"
    )
