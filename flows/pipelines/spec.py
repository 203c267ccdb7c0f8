"""A declared pipeline: a source reference, a dataset and a destination (see `discovery.py`).

Declarations hold the source as a `module:function` string, so listing pipelines imports no
user code; the source is imported (and checked) only when the pipeline is about to run.
Importing this module imports no dlt either: a Prefect engine that only hands a spec to the
attempt's process never loads it (flows/errors.py says why).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.errors import EXIT_CONFIG, ConfigError, describe_unknown_destination, exit_code_for
from flows.pipelines.errors import DeclarationError, NotASourceError, SourceImportError

if TYPE_CHECKING:
    import dlt
    from dlt.common.destination import Destination
    from dlt.common.runtime.collector import Collector
    from dlt.sources import DltSource

# Nested rows carry the load id of their root row, so a partly loaded package can be
# removed from every table it touched before it is loaded again (see runner.py).
LOAD_ID_PROPAGATION: Any = {"root": {"_dlt_id": "_dlt_root_id", "_dlt_load_id": "_dlt_load_id"}}

SourceRef = str | Callable[..., Any]


@dataclass(frozen=True)
class PipelineSpec:
    """Everything needed to run one pipeline; sources stay free of pipeline concerns.

    `source` is "module:function" (or the function itself, for ad hoc runs); `destination`
    None means dlt config (`pipelines.<name>.destination`, `pipelines.destination`) or
    DuckDB; `options` are keyword arguments of the source function; `declared_in` says where
    the declaration was found (a config file, an entry point, "ad hoc").
    """

    name: str
    source: SourceRef
    dataset_name: str = ""
    destination: str | None = None
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    declared_in: str = "ad hoc"
    extract_options: Mapping[str, Any] = field(default_factory=dict)
    # seconds between checkpoints of a long extract (flows/durable/segments.py); None: the
    # default for a source that qualifies, 0: off
    checkpoint_every: float | None = None

    @property
    def dataset(self) -> str:
        return self.dataset_name or self.name

    @property
    def source_name(self) -> str:
        if isinstance(self.source, str):
            return self.source
        return (
            f"{getattr(self.source, '__module__', '?')}:{getattr(self.source, '__qualname__', '?')}"
        )

    def destination_name(self) -> str:
        return self.destination_setting()[0]

    def destination_setting(self) -> tuple[str, str]:
        """The destination's name and the setting it came from (for a message naming it)."""
        from flows.config.settings import config_value

        upper = self.name.upper()
        for value, where in (
            (
                config_value(f"pipelines.{self.name}.destination"),
                f"PIPELINES__{upper}__DESTINATION (or [pipelines.{self.name}] destination)",
            ),
            (self.destination, f"the declaration of pipeline {self.name!r} ({self.declared_in})"),
            (
                config_value("pipelines.destination"),
                "PIPELINES__DESTINATION (or [pipelines] destination)",
            ),
        ):
            if value:
                return str(value), where
        return "duckdb", "the default"

    def build_destination(self) -> Destination[Any, Any]:
        import dlt
        from dlt.common.destination import Destination

        from flows.config.settings import config_value, flows_home

        name = self.destination_name()
        if name == "duckdb" and not config_value("destination.duckdb.credentials"):
            path = flows_home() / "warehouse" / f"flows_{self.name}.duckdb"
            path.parent.mkdir(parents=True, exist_ok=True)
            return dlt.destinations.duckdb(credentials=str(path))
        try:
            destination = Destination.from_reference(name)
        except Exception as err:
            if exit_code_for(err) != EXIT_CONFIG:
                raise
            where = self.destination_setting()[1]
            raise ConfigError(describe_unknown_destination(err, where)) from err
        assert destination is not None
        return destination

    def checkpoint_setting(self) -> float | None:
        """`checkpoint_every` from dlt config (`PIPELINES__<NAME>__CHECKPOINT_EVERY`, or the
        `[pipelines.<name>]` table), else the declaration's; None when neither sets it."""
        from flows.config.settings import config_value

        key = f"PIPELINES__{self.name.upper()}__CHECKPOINT_EVERY"
        configured = config_value(f"pipelines.{self.name}.checkpoint_every")
        if configured is None:
            return self.checkpoint_every
        return parse_seconds(configured, f"{key} (or checkpoint_every in [pipelines.{self.name}])")

    def loader_file_format(self) -> str | None:
        from flows.config.settings import LOADER_FILE_FORMATS, config_value

        return config_value(f"pipelines.{self.name}.loader_file_format") or (
            LOADER_FILE_FORMATS.get(self.destination_name())
        )

    def source_function(self) -> Callable[..., Any]:
        """Imports the declared source function; a failure is a one-line `ConfigError`."""
        if not isinstance(self.source, str):
            return self.source
        return import_reference(self.source, f"pipeline {self.name!r} ({self.declared_in})")

    def builds_lazily(self) -> bool:
        """True for a dlt source factory or resource: known to give a dlt source, and built
        only once the pipeline is attached to its state (its body may read that state or
        connect to the source system). A plain function is called up front instead, so that
        one returning something else is refused before anything is written."""
        from dlt.extract.reference import SourceFactory
        from dlt.extract.resource import DltResource

        return isinstance(self.source_function(), SourceFactory | DltResource)

    def build_source(self, **overrides: Any) -> DltSource:
        return self.check_source(self.source_function()(**{**self.options, **overrides}))

    def check_source(self, built: Any) -> DltSource:
        """The platform settings every source gets, whoever built it; a resource becomes a
        source of its own name."""
        from dlt.common.normalizers.json.relational import DataItemNormalizer
        from dlt.common.schema import Schema
        from dlt.extract.resource import DltResource
        from dlt.sources import DltSource

        if isinstance(built, DltResource):
            built = DltSource(Schema(self.name), self.name, [built])
        if not isinstance(built, DltSource):
            raise NotASourceError(
                f"pipeline {self.name!r} ({self.declared_in}): {self.source_name} returned "
                f"{type(built).__name__}, not a dlt source or resource"
            )
        DataItemNormalizer.update_normalizer_config(
            built.schema, {"propagation": LOAD_ID_PROPAGATION}
        )
        return built

    def build_pipeline(
        self, pipelines_dir: Path, progress: Collector | None = None
    ) -> dlt.Pipeline:
        import dlt

        return dlt.pipeline(
            pipeline_name=self.name,
            pipelines_dir=str(pipelines_dir),
            destination=self.build_destination(),
            dataset_name=self.dataset,
            progress=progress,  # type: ignore[arg-type]  # dlt accepts None: no progress
        )

    def run_callbacks(self) -> tuple[Any, ...]:
        """Runner callbacks every run of this pipeline gets (a fan-out part: the shared
        schema lock)."""
        return ()

    def extract_kwargs(self, full_refresh: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(self.extract_options)
        if fmt := self.loader_file_format():
            kwargs["loader_file_format"] = fmt
        if full_refresh:
            kwargs["refresh"] = "drop_resources"
        return kwargs


def parse_seconds(value: Any, where: str) -> float:
    """A number of seconds, 0 or more; anything else is a one-line `DeclarationError`."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise DeclarationError(f"{where} must be seconds, a number >= 0 (0: off), got {value!r}")
    return seconds


def import_reference(reference: str, what: str, callable_only: bool = True) -> Any:
    """`module:qualname` imported, with the project folder (dlt's run dir) importable."""
    module, _, qualname = reference.partition(":")
    if not module or not qualname:
        raise SourceImportError(f"{what}: source {reference!r} is not 'module:function'")
    import dlt

    run_dir = str(Path(dlt.current.run_context().run_dir).resolve())
    if run_dir not in sys.path:
        sys.path.insert(0, run_dir)
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as err:
        raise SourceImportError(
            f"{what}: source {reference!r} does not import: {type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        ) from err
    if callable_only and not callable(obj):
        raise NotASourceError(f"{what}: source {reference!r} is not a function")
    return obj
