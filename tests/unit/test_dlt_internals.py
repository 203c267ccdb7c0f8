"""Every private part of dlt the platform relies on (flows/dlt_internals.py) still exists
with the signature relied on: after a dlt upgrade, a failure here names what to re-check."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.providers import DictionaryProvider
from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.pipeline import LoadInfo
from dlt.common.runtime.collector import Collector
from dlt.common.storages.file_storage import FileStorage
from dlt.common.storages.load_package import PackageStorage, ParsedLoadJobFileName
from dlt.common.storages.load_storage import LoadStorage
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient
from dlt.destinations.job_client_impl import SqlJobClientBase
from dlt.load import Load
from dlt.pipeline.pipeline import Pipeline

from flows import dlt_internals


def params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def test_pipeline_internals() -> None:
    assert params(Pipeline._get_destination_clients) == ["self", "schema"]
    assert params(Pipeline._get_load_storage) == ["self"]
    # reinitialize() passes these positionally, in this order
    assert params(Pipeline.__init__) == [
        "self",
        "pipeline_name",
        "pipelines_dir",
        "pipeline_salt",
        "destination",
        "staging",
        "dataset_name",
        "import_schema_path",
        "export_schema_path",
        "dev_mode",
        "progress",
        "must_attach_to_local_pipeline",
        "config",
        "refresh",
    ]


def test_a_pipeline_object_has_what_is_read_from_it(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        "internals",
        pipelines_dir=str(tmp_path),
        destination=dlt.destinations.duckdb(str(tmp_path / "db.duckdb")),
        dataset_name="raw",
    )
    for name in ("_destination", "_staging", "pipeline_salt", "dev_mode", "refresh", "config"):
        assert hasattr(pipeline, name), name
    config = pipeline._schema_storage.config
    assert hasattr(config, "import_schema_path") and hasattr(config, "export_schema_path")
    storage = pipeline._get_load_storage()
    assert isinstance(storage, LoadStorage)
    assert params(storage.normalized_packages.load_schema) == ["load_id"]
    assert Path(storage.storage.storage_path).is_relative_to(tmp_path)
    client = dlt_internals.sync_destination_client(pipeline)
    assert dlt_internals.is_sql_job_client(client)
    assert dlt_internals.duckdb_database(client) == tmp_path / "db.duckdb"
    dlt_internals.reinitialize(pipeline)
    assert pipeline.pipeline_name == "internals" and pipeline.dataset_name == "raw"


def test_load_step_internals() -> None:
    assert params(Load.submit_job) == ["self", "file_path", "load_id", "schema", "restore"]
    assert params(Load.complete_package) == ["self", "load_id", "schema", "aborted"]
    assert "self.load_storage" in inspect.getsource(Load.__init__)
    assert "storage_path" in inspect.getsource(FileStorage.__init__)
    assert params(SqlJobClientBase.complete_load) == ["self", "load_id"]
    assert params(Psycopg2SqlClient.open_connection) == ["self"]
    assert params(Psycopg2SqlClient.commit_transaction) == ["self"]
    assert params(DuckDbCredentials.external_conn) == ["self"]


def test_load_info_fields() -> None:
    # empty_load_info() builds it positionally; merged_load_info() replaces these by name
    assert LoadInfo._fields == (
        "pipeline",
        "metrics",
        "destination_type",
        "destination_displayable_credentials",
        "destination_name",
        "environment",
        "staging_type",
        "staging_name",
        "staging_displayable_credentials",
        "destination_fingerprint",
        "dataset_name",
        "loads_ids",
        "load_packages",
        "first_run",
    )


def test_package_layout() -> None:
    expected = {
        "NEW_JOBS_FOLDER": "new_jobs",
        "STARTED_JOBS_FOLDER": "started_jobs",
        "COMPLETED_JOBS_FOLDER": "completed_jobs",
        "FAILED_JOBS_FOLDER": "failed_jobs",
        "PENDING_TRANSITIONS_FOLDER": ".pending_transitions",
        "EXCEPTIONS_FOLDER": ".exceptions",
        "SCHEMA_UPDATES_FILE_NAME": "schema_updates.json",
        "APPLIED_SCHEMA_UPDATES_FILE_NAME": "applied_schema_updates.json",
    }
    for name, value in expected.items():
        assert getattr(PackageStorage, name) == value == getattr(dlt_internals, name), name
    parsed = dlt_internals.parse_job_file_name("events.1a2b3c.0.parquet")
    assert isinstance(parsed, ParsedLoadJobFileName)
    assert (parsed.table_name, parsed.file_format) == ("events", "parquet")
    with pytest.raises(Exception):  # noqa: B017  # what resume.py catches: anything
        dlt_internals.parse_job_file_name("not-a-job")


def test_names_and_config() -> None:
    assert params(FileStorage.validate_file_name_component) == ["name"]
    dlt_internals.validate_file_name_component("daily_events--20240101-20240107")
    with pytest.raises(ValueError):
        dlt_internals.validate_file_name_component("a/b")
    provider = DictionaryProvider()
    assert isinstance(dlt_internals.provider_values(provider), dict)
    dlt_internals.set_provider_values(provider, {"a": {"b": "1"}})
    assert provider.get_value("b", str, None, "a")[0] == "1"
    assert hasattr(Container()[PluggableRunContext].providers, "providers")
    assert list(dlt_internals.config_providers())
    assert isinstance(Container()[ConfigSectionContext].sections, tuple)
    assert isinstance(dlt_internals.config_sections(), tuple)


def test_collector_methods() -> None:
    # a wrapped collector is started and stopped through them; the platform's implement them
    assert {"_start", "_stop", "update"} <= Collector.__abstractmethods__
    assert params(Collector._start) == ["self", "step"]
    assert params(Collector._stop) == ["self"]
    assert params(Collector.__call__) == ["self", "step"]


@pytest.mark.parametrize(
    "module, names",
    [  # looked up by module and name in flows/errors.py, which never imports dlt
        ("dlt.pipeline.exceptions", ["PipelineStepFailed", "InvalidPipelineName"]),
        ("dlt.common.exceptions", ["TransientException", "TerminalException"]),
        ("dlt.common.schema.exceptions", ["DataValidationError"]),
        (
            "dlt.common.configuration.exceptions",
            ["ConfigurationException", "ConfigValueCannotBeCoercedException"],
        ),
    ],
)
def test_exception_classes_looked_up_by_name(module: str, names: list[str]) -> None:
    loaded = importlib.import_module(module)
    for name in names:
        assert isinstance(getattr(loaded, name), type), f"{module}.{name}"


def test_a_resources_incremental_and_limit_are_read(tmp_path: Path) -> None:
    """The incremental a resource declares (default, passed to the call, or by hints) and
    whether its limit stopped it: what checkpointed extracts rely on."""

    @dlt.resource
    def ordered(
        cursor: dlt.sources.incremental[int] = dlt.sources.incremental(
            "id", initial_value=0, row_order="asc"
        ),
    ) -> object:
        yield from ([{"id": i}] for i in range(cursor.last_value + 1, 50))

    @dlt.resource
    def bare(cursor: Any = dlt.sources.incremental("id")) -> object:
        yield [{"id": 1}]

    assert dlt_internals.declared_incremental(ordered).row_order == "asc"
    called = ordered(dlt.sources.incremental("id", initial_value=5))
    assert dlt_internals.declared_incremental(called).row_order == "asc"
    assert dlt_internals.declared_incremental(bare).row_order is None
    passed = bare(dlt.sources.incremental("id", row_order="asc"))  # merged with the default
    assert dlt_internals.declared_incremental(passed).row_order == "asc"
    hinted = bare.with_name("hinted")
    hinted.apply_hints(incremental=dlt.sources.incremental("id", row_order="desc"))
    assert dlt_internals.declared_incremental(hinted).row_order == "desc"
    assert dlt_internals.declared_incremental(dlt.resource([1], name="plain")) is None

    limited = ordered.with_name("limited").add_limit(max_items=3)
    whole = ordered.with_name("whole").add_limit(max_items=1000)
    pipeline = dlt.pipeline("limits", pipelines_dir=str(tmp_path))
    pipeline.extract([limited, whole])
    assert dlt_internals.limit_reached(limited)
    assert not dlt_internals.limit_reached(whole)
