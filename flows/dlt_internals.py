"""Every use of dlt's private API, in one place: what to re-check when dlt is upgraded.

dlt offers no public API for some of what the platform needs (the job client dlt's own sync
opens, a normalized package's schema, re-initialising a pipeline in place, hooks in the load
step). Each such use is a thin named function here; tests/unit/test_dlt_internals.py checks
that every internal it touches still exists with the signature relied on (dlt 1.31).

What this module touches:
- `Pipeline._get_destination_clients(schema)`, `Pipeline._get_load_storage()` and a load
  storage's `normalized_packages.load_schema(load_id)` and `storage.storage_path`;
- `Pipeline.__init__` called again on a live object, with `_destination`, `_staging` and
  `_schema_storage.config.import_schema_path / export_schema_path` (as `Pipeline.drop()`);
- `LoadInfo`, a NamedTuple built positionally and `_replace`d, with an attribute set on it;
- `Load.submit_job`, `Load.complete_package`, `Load.load_storage`,
  `SqlJobClientBase.complete_load`, `Psycopg2SqlClient.open_connection` and
  `.commit_transaction`: replaced by the wrappers of flows/durable/fencing.py, which stay
  there (`_wrap`, `_in_transaction`, `_named`, `_checked`); only the installing is here;
  `Psycopg2SqlClient.open_connection` is wrapped again by flows/system/logins.py (a refused
  login named by its SQLSTATE);
- `SqlJobClientBase` (dlt.destinations.job_client_impl) and `DuckDbCredentials`
  (dlt.destinations.impl.duckdb.configuration), internal modules;
- `PackageStorage`'s folder and file names and `ParsedLoadJobFileName` (a package's layout on
  disk, dlt.common.storages.load_package);
- `FileStorage.validate_file_name_component`, the rule `dlt.pipeline` checks names by;
- `DictionaryProvider._config_doc`, and the `Container` contexts `PluggableRunContext`
  (`providers.providers`) and `ConfigSectionContext` (`sections`);
- a resource's limit step's `exhausted` flag (set when `add_limit` stopped it), and
  its `_pipe.gen` and `_explicit_args` (the incremental it was declared or called
  with, before dlt instantiates it at extract time);
- a `Collector`'s `_start` / `_stop` (its abstract methods, called on a wrapped collector).
  The platform's collectors (flows/durable/checkpoint.py, flows/progress/collector.py)
  implement them, as every dlt collector does.

dlt's exception classes that flows/errors.py looks up by module and name (it never imports
dlt) are checked by the same test.

Importing this module imports dlt's common parts only (flows/state/names.py imports it
inside its function: the Prefect engine imports no dlt); the load step, the destinations'
modules and the PostgreSQL client are imported by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from dlt.common.storages.load_package import PackageStorage, ParsedLoadJobFileName

if TYPE_CHECKING:
    import dlt
    from dlt.common.configuration.providers import ConfigProvider, DictionaryProvider
    from dlt.common.destination.client import JobClientBase
    from dlt.common.pipeline import LoadInfo
    from dlt.common.runtime.collector import Collector
    from dlt.common.schema import Schema
    from dlt.destinations.job_client_impl import SqlJobClientBase

Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


# pipelines ----------------------------------------------------------------------------------


def destination_client(pipeline: dlt.Pipeline, schema: Schema) -> JobClientBase:
    """The job client the pipeline opens for `schema` (not entered)."""
    return pipeline._get_destination_clients(schema)[0]


def sync_destination_client(pipeline: dlt.Pipeline) -> JobClientBase:
    """The job client dlt's own sync opens: `destination_client()` would name its ad hoc
    schema after the pipeline, which dlt refuses for fan-out parts (`daily_events--2024...`)."""
    from dlt.common.schema import Schema
    from dlt.common.schema.utils import normalize_schema_name

    return destination_client(pipeline, Schema(normalize_schema_name(pipeline.pipeline_name)))


def is_sql_job_client(client: Any) -> TypeGuard[SqlJobClientBase]:
    """True for the job client of a destination that speaks SQL."""
    from dlt.destinations.job_client_impl import SqlJobClientBase

    return isinstance(client, SqlJobClientBase)


def duckdb_database(client: Any) -> Path | None:
    """The DuckDB file a job client writes to (None when it is not DuckDB's or writes to a
    connection the user passed in)."""
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    credentials = getattr(client.config, "credentials", None)
    if isinstance(credentials, DuckDbCredentials) and credentials.external_conn() is None:
        return Path(credentials.database)
    return None


def normalized_schema_loader(pipeline: dlt.Pipeline) -> Callable[[str], Schema]:
    """Loads the schema stored in a normalized package, by load id (dlt has no public API
    for a package's schema)."""
    return pipeline._get_load_storage().normalized_packages.load_schema


def reinitialize(pipeline: dlt.Pipeline) -> None:
    """Re-runs `Pipeline.__init__` on the object with the arguments it was made with, as
    dlt's own `Pipeline.drop()` does: it reads the working dir's state and schemas again."""
    pipeline.__init__(  # type: ignore[misc]
        pipeline.pipeline_name,
        pipeline.pipelines_dir,
        pipeline.pipeline_salt,
        pipeline._destination,
        pipeline._staging,
        pipeline.dataset_name,
        pipeline._schema_storage.config.import_schema_path,
        pipeline._schema_storage.config.export_schema_path,
        pipeline.dev_mode,
        pipeline.collector,
        False,
        pipeline.config,
        pipeline.refresh,
    )


# resources ----------------------------------------------------------------------------------


def declared_incremental(resource: Any) -> Any:
    """The incremental a resource will extract with (None without one): set by hints, passed
    when the resource was called, or its function's default. dlt makes the instance only at
    extract time; an incremental passed to the call is merged with the default, as dlt
    merges it."""
    import inspect

    from dlt.extract.incremental import Incremental, IncrementalResourceWrapper

    wrapper = resource.incremental
    if wrapper is None or isinstance(wrapper, Incremental):
        return wrapper
    if wrapper.incremental is not None:
        return wrapper.incremental
    explicit = next(
        (v for v in (resource._explicit_args or {}).values() if isinstance(v, Incremental)), None
    )
    gen = resource._pipe.gen
    function = getattr(gen, "__wrapped__", gen)
    try:
        param = IncrementalResourceWrapper.get_incremental_arg(inspect.signature(function))
    except (TypeError, ValueError):
        param = None
    default = param.default if param is not None else None
    if isinstance(default, Incremental):
        return default.merge(explicit) if explicit is not None else default
    return explicit


def limit_reached(resource: Any) -> bool:
    """True when the resource's `add_limit` stopped it during the last extract (dlt binds the
    limit of the resource object itself, so its flag tells)."""
    limit = resource.limit
    return bool(limit is not None and getattr(limit, "exhausted", False))


# load info ----------------------------------------------------------------------------------


def empty_load_info(pipeline: dlt.Pipeline) -> LoadInfo:
    """What `pipeline.load()` would say had there been a package to load."""
    from dlt.common.pipeline import LoadInfo

    destination = pipeline.destination
    return LoadInfo(
        pipeline,
        {},
        destination.destination_type,
        "",
        destination.destination_name,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        pipeline.dataset_name,
        [],
        [],
        pipeline.first_run,
    )


def merged_load_info(infos: list[Any]) -> LoadInfo:
    """The last of several LoadInfos, naming the packages and metrics of them all."""
    packages = [p for i in infos for p in i.load_packages]
    return infos[-1]._replace(
        loads_ids=[p.load_id for p in packages],
        load_packages=packages,
        metrics={k: v for i in infos for k, v in i.metrics.items()},
    )


def attach_to_load_info(info: LoadInfo, name: str, value: Any) -> None:
    """Sets an attribute on a LoadInfo (a NamedTuple subclass with a `__dict__`)."""
    setattr(info, name, value)


# the load step ------------------------------------------------------------------------------


def load_storage_path(load: Any) -> str:
    """The folder of the load storage a `dlt.load.Load` works in."""
    return str(load.load_storage.storage.storage_path)


def wrap_load_step(
    *,
    submit_job: Wrapper,
    complete_package: Wrapper,
    complete_load: Wrapper,
    open_connection: Wrapper,
    commit_transaction: Wrapper,
) -> None:
    """Replaces dlt's load step methods by what each wrapper makes of the original (once per
    process: the caller makes sure of it)."""
    from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient
    from dlt.destinations.job_client_impl import SqlJobClientBase
    from dlt.load import Load

    Load.submit_job = submit_job(Load.submit_job)  # type: ignore[method-assign]
    Load.complete_package = complete_package(Load.complete_package)  # type: ignore[method-assign]
    SqlJobClientBase.complete_load = complete_load(SqlJobClientBase.complete_load)  # type: ignore[method-assign]
    Psycopg2SqlClient.open_connection = open_connection(Psycopg2SqlClient.open_connection)  # type: ignore[method-assign]
    Psycopg2SqlClient.commit_transaction = commit_transaction(  # type: ignore[method-assign]
        Psycopg2SqlClient.commit_transaction
    )


def wrap_postgres_connect(wrapper: Wrapper) -> None:
    """Replaces `Psycopg2SqlClient.open_connection` by what `wrapper` makes of it."""
    from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient

    Psycopg2SqlClient.open_connection = wrapper(Psycopg2SqlClient.open_connection)  # type: ignore[method-assign]


# a load package on disk ---------------------------------------------------------------------


NEW_JOBS_FOLDER: str = PackageStorage.NEW_JOBS_FOLDER
STARTED_JOBS_FOLDER: str = PackageStorage.STARTED_JOBS_FOLDER
COMPLETED_JOBS_FOLDER: str = PackageStorage.COMPLETED_JOBS_FOLDER
FAILED_JOBS_FOLDER: str = PackageStorage.FAILED_JOBS_FOLDER
PENDING_TRANSITIONS_FOLDER: str = PackageStorage.PENDING_TRANSITIONS_FOLDER
EXCEPTIONS_FOLDER: str = PackageStorage.EXCEPTIONS_FOLDER
SCHEMA_UPDATES_FILE_NAME: str = PackageStorage.SCHEMA_UPDATES_FILE_NAME
APPLIED_SCHEMA_UPDATES_FILE_NAME: str = PackageStorage.APPLIED_SCHEMA_UPDATES_FILE_NAME


def parse_job_file_name(name: str) -> ParsedLoadJobFileName:
    """A job file's table name and file format (`ParsedLoadJobFileName`); raises on a file
    that is not a job."""
    return ParsedLoadJobFileName.parse(name)


# names and config ---------------------------------------------------------------------------


def validate_file_name_component(name: str) -> None:
    """dlt's rule for a pipeline name (what `dlt.pipeline` raises InvalidPipelineName by):
    ValueError when `name` is not one folder name."""
    from dlt.common.storages.file_storage import FileStorage

    FileStorage.validate_file_name_component(name)


def provider_values(provider: DictionaryProvider) -> dict[str, Any]:
    """The nested values of a dictionary provider, as it holds them (not a copy)."""
    doc: dict[str, Any] = provider._config_doc
    return doc


def set_provider_values(provider: DictionaryProvider, values: dict[str, Any]) -> None:
    provider._config_doc = values


def config_providers() -> Iterator[ConfigProvider]:
    """The providers of dlt's current run context, in the order dlt asks them."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    yield from Container()[PluggableRunContext].providers.providers


def config_sections() -> tuple[str, ...]:
    """The config sections dlt resolves in right now (`("sources", section, name)` inside a
    source function)."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.config_section_context import ConfigSectionContext

    return tuple(Container()[ConfigSectionContext].sections)


# collectors ---------------------------------------------------------------------------------


def start_collector(collector: Collector, step: str) -> None:
    """What dlt does when a step starts, for a collector wrapped by another."""
    collector(step)._start(step)


def stop_collector(collector: Collector) -> None:
    collector._stop()
