"""Where the platform keeps things on a laptop, and the dlt settings it runs with.

Everything can be overridden by explicit dlt config (env, config.toml, secrets.toml): the
platform's values come from the last provider in dlt's chain.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.configuration.providers import DictionaryProvider

from flows import dlt_internals
from flows.config.platform import platform_config

if TYPE_CHECKING:
    from flows.state import StateStore

# Measured here: dlt's default DuckDB loader format (insert_values) took ~9 GB and 195 s for
# 1M rows; parquet takes a few hundred MB. Formats are chosen per destination.
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
# DuckDB's threads under a memory limit (sizing.duckdb_threads), in the settings dlt applies
# to each DuckDB connection it opens; a user's own `global_config` replaces it whole.
DUCKDB_GLOBAL_CONFIG = "destination.duckdb.credentials.global_config"


def default_extract_options(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """What the runner passes to `extract` unless its caller does: the platform's loader file
    format for the destination's type, unless dlt config sets one
    (`[normalize] loader_file_format`, NORMALIZE__LOADER_FILE_FORMAT)."""
    if config_value("normalize.loader_file_format"):
        return {}
    kind = str(pipeline.destination.destination_type).rsplit(".", 1)[-1]
    fmt = LOADER_FILE_FORMATS.get(kind)
    return {"loader_file_format": fmt} if fmt else {}


def config_value(key: str) -> str | None:
    """A dlt config value as text, or None when no provider has it."""
    value: Any = dlt.config.get(key)
    return None if value is None else str(value)


def flows_home() -> Path:
    """Root of the embedded default: state store, pipelines dir and DuckDB files."""
    return platform_config().home()


def default_pipelines_dir() -> Path:
    configured = config_value("pipelines_dir")
    return Path(configured) if configured else flows_home() / "pipelines"


def default_state_url() -> str:
    return config_value("state.url") or f"file://{flows_home() / 'state'}"


def apply_platform_defaults(
    destination: str | None = None, pipeline_name: str | None = None, adaptive: bool | None = None
) -> dict[str, str]:
    """Puts the platform defaults into dlt's provider chain, below every user provider.

    With a container memory limit (and unless FLOWS_ADAPTIVE=false), buffer sizes, file
    rotation and worker counts are sized to fit it (see sizing.py). `destination` (a dlt
    destination name) adds its DESTINATION_DEFAULTS, scoped to `pipeline_name` when given
    (the `<pipeline>.load.workers` section), so that they win over the adaptive values and
    the next pipeline run in the same process does not see them. Nothing is written to
    `os.environ`: any value the user configured (env, config.toml, secrets.toml) is found
    first. Returns the keys this call made available, dotted.
    """
    if adaptive is None:
        adaptive = platform_config().flows_adaptive
    wanted = dict(PLATFORM_DEFAULTS)
    destination_defaults = DESTINATION_DEFAULTS.get(destination or "", {})
    if adaptive:
        from flows.config.sizing import adaptive_settings, duckdb_threads
        from flows.system.resources import container_limits, effective_cpus

        limits = container_limits()
        cpus = effective_cpus(limits)
        loader_format = (
            config_value(f"pipelines.{pipeline_name}.loader_file_format") if pipeline_name else None
        ) or LOADER_FILE_FORMATS.get(destination or "")
        # load files sized for the jobs the destination runs at once (DuckDB: one)
        pinned = destination_defaults.get("load.workers")
        wanted.update(
            adaptive_settings(limits, cpus, loader_format, int(pinned) if pinned else None)
        )
        if destination == "duckdb" and (threads := duckdb_threads(limits, cpus)) is not None:
            # dlt sets it on every connection it opens (`SET GLOBAL threads = ...`)
            wanted[DUCKDB_GLOBAL_CONFIG] = json.dumps({"threads": threads})
    scoped = {
        f"{pipeline_name}.{key}" if pipeline_name else key: value
        for key, value in destination_defaults.items()
    }
    provider = platform_provider()
    provider.replace({**wanted, **scoped})
    return {**wanted, **scoped}


class PlatformDefaultsProvider(DictionaryProvider):
    """The platform's defaults as the last provider of dlt's chain: dlt asks it only when no
    env var, config.toml or secrets.toml has the key. Each call of `apply_platform_defaults`
    replaces its values, so per-pipeline values never reach the next run."""

    NAME = "Platform defaults"

    def replace(self, dotted: Mapping[str, str]) -> None:
        dlt_internals.set_provider_values(self, {})
        self.add(dotted)

    def add(self, dotted: Mapping[str, str]) -> None:
        for key, value in dotted.items():
            *sections, leaf = key.split(".")
            node = dlt_internals.provider_values(self)
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value

    @property
    def supports_secrets(self) -> bool:
        return False


def platform_provider() -> PlatformDefaultsProvider:
    """The registered provider (dlt's run context may have been reloaded: then again)."""
    for provider in dlt_internals.config_providers():
        if isinstance(provider, PlatformDefaultsProvider):
            return provider
    provider = PlatformDefaultsProvider()
    dlt.config.register_provider(provider)
    return provider


@contextmanager
def platform_values(dotted: Mapping[str, str]) -> Iterator[None]:
    """Platform values for the block only; a value the user configured still wins."""
    provider = platform_provider()
    saved = copy.deepcopy(dlt_internals.provider_values(provider))
    provider.add(dotted)
    try:
        yield
    finally:
        dlt_internals.set_provider_values(provider, saved)


def normalize_step_values(pipeline: dlt.Pipeline, load_ids: Sequence[str]) -> dict[str, str]:
    """The platform's values for normalizing `load_ids`: one process when their row items
    are too few to pay for the pool (sizing.py). Arrow items are extracted as Parquet and are
    not counted; the pipeline-state row every package carries is a few hundred bytes."""
    from flows.config.sizing import normalize_in_one_process

    extracted = Path(pipeline.working_dir) / "normalize" / "extracted"
    row_bytes = sum(
        job.stat().st_size
        for load_id in load_ids
        for job in (extracted / load_id / "new_jobs").glob("*")
        if not job.name.endswith(".parquet")
    )
    return {"normalize.workers": "1"} if normalize_in_one_process(row_bytes) else {}


def open_configured_store(url: str | None = None) -> StateStore:
    """The state store at `url` (`--state-url`), else the configured one (`STATE__URL`,
    `[state] url`), else the local default; retried as configured. A bad URL is refused
    naming where it came from."""
    from flows.state import open_store
    from flows.state.config import state_config, url_origin

    chosen = url or state_config().url or f"file://{flows_home() / 'state'}"
    return open_store(chosen, origin=url_origin(url))


def rotate_extract_like_load_files() -> None:
    """For a dlt source that yields arrow tables; call it inside the source function.

    Normalize hands an arrow source's extracted files to the load step as they are, one load
    job per file, so they rotate at the load files' size (sizing.py) instead of the smaller
    size that splits row items among normalize's workers. Measured here, 1,000,000 rows into
    DuckDB: `files` loaded in 1.0 s as 2 jobs against 2.8 s as 20, `products` in 2.2 s
    against 3.3 s. Set for the source's config section (`sources.<section>.data_writer`),
    below any value a user configured, and dropped with the other platform defaults by the
    next `apply_platform_defaults`.
    """
    rows = config_value("normalize.data_writer.file_max_items")
    sections = dlt_internals.config_sections()  # ("sources", section, name)
    if rows is None or len(sections) < 2:
        return
    platform_provider().add({f"{sections[0]}.{sections[1]}.data_writer.file_max_items": rows})
