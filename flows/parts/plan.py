"""A declared pipeline split into parts: date ranges (backfills) or resources (tables).

Each part is a pipeline of its own: `<pipeline>--<part>` names its working state, snapshots
and lease in the state store, its row in `_dlt_pipeline_state` and, as
`<schema>__<part>`, its schema (`_dlt_version`). Only the dataset is shared. That is what
keeps parts that run at once from overwriting each other's state: dlt keys restored state by
pipeline name and stored schemas by schema name, so two pipelines with one schema name in one
dataset restore each other's schema (dlt-hub/dlt#2218, #2687). Each part also gets its own
staging dataset, since merge and replace jobs truncate the staging tables they load.

Schema migrations into the shared dataset go one at a time (`flows/parts/schema_lock.py`).
Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from flows.errors import ConfigError
from flows.pipelines import PipelineSpec

if TYPE_CHECKING:  # no dlt for the flows that only plan parts (flows/errors.py says why)
    from dlt.common.destination import Destination
    from dlt.sources import DltSource

    from flows.state import StateStore

PART_SEPARATOR = "--"
DEFAULT_PARALLELISM = 4
# destinations where two processes cannot write at once: parts run one at a time there
SINGLE_WRITER = {"duckdb": "a DuckDB file allows one writer process"}
MAX_SCHEMA_NAME = 64  # dlt's limit


class FanoutConfigError(ConfigError):
    """A fan-out that cannot be run as asked (a bad range, unknown resources, parallel parts
    into a single-writer destination)."""


@dataclass(frozen=True)
class Part:
    """One partition: a date range, a set of resources, or both."""

    key: str
    resources: tuple[str, ...] = ()
    start_date: date | None = None
    end_date: date | None = None

    def source_kwargs(self) -> dict[str, Any]:
        """What the part adds to the source function's arguments (a backfillable source
        takes `start_date` and `end_date`)."""
        kwargs: dict[str, Any] = {}
        if self.start_date is not None:
            kwargs["start_date"] = self.start_date
        if self.end_date is not None:
            kwargs["end_date"] = self.end_date
        return kwargs


def part_name(pipeline: str, key: str) -> str:
    return f"{pipeline}{PART_SEPARATOR}{key}"


def is_part_of(name: str, pipeline: str) -> bool:
    """True for `pipeline` itself and each of its parts."""
    return name == pipeline or name.startswith(pipeline + PART_SEPARATOR)


def part_suffix(key: str) -> str:
    """The part's key as an identifier (schema names, staging datasets)."""
    return re.sub(r"[^a-z0-9_]+", "_", key.lower()).strip("_") or "part"


def part_schema_name(schema: str, key: str) -> str:
    """`<schema>__<key>` as a valid dlt schema name (at most 64 characters)."""
    name = f"{schema}__{part_suffix(key)}"
    if len(name) <= MAX_SCHEMA_NAME:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{schema[: MAX_SCHEMA_NAME - len(digest) - 2]}__{digest}"


def plan_dates(start_date: date, end_date: date, chunk_days: int) -> list[Part]:
    """Consecutive ranges of `chunk_days` days covering start..end inclusive."""
    if end_date < start_date:
        raise FanoutConfigError(f"end_date {end_date} is before start_date {start_date}")
    if chunk_days < 1:
        raise FanoutConfigError(f"chunk_days must be at least 1, not {chunk_days}")
    parts: list[Part] = []
    first = start_date
    while first <= end_date:
        last = min(end_date, first + timedelta(days=chunk_days - 1))
        key = f"{first:%Y%m%d}" if first == last else f"{first:%Y%m%d}-{last:%Y%m%d}"
        parts.append(Part(key, start_date=first, end_date=last))
        first = last + timedelta(days=1)
    return parts


def plan_resources(source: DltSource, only: Sequence[str] | None = None) -> list[Part]:
    """One part per selected resource of `source` (a `sql_database` source: per table)."""
    known = list(source.selected_resources)
    wanted = list(only) if only else known
    unknown = [name for name in wanted if name not in source.resources]
    if unknown:
        raise FanoutConfigError(
            f"source {source.name!r} has no resources {unknown}; it has: {', '.join(known)}"
        )
    if not wanted:
        raise FanoutConfigError(f"source {source.name!r} has no selected resources to split")
    return [Part(name, resources=(name,)) for name in wanted]


@dataclass(frozen=True)
class PartSpec(PipelineSpec):
    """A part of a declared pipeline: its own pipeline and schema name, the base's dataset,
    destination and source, with the part's resources selected and date range passed."""

    base: PipelineSpec | None = None
    part: Part = field(default_factory=lambda: Part("part"))

    def _base(self) -> PipelineSpec:
        assert self.base is not None, "a PartSpec is made by part_spec()"
        return self.base

    def destination_name(self) -> str:
        return self._base().destination_name()

    def loader_file_format(self) -> str | None:
        return self._base().loader_file_format()

    def build_destination(self) -> Destination[Any, Any]:
        destination = self._base().build_destination()  # the base's DuckDB file, say
        layout = f"%s_{part_suffix(self.part.key)}_staging"
        destination.config_params["staging_dataset_name_layout"] = layout
        return destination

    def check_source(self, built: Any) -> DltSource:
        from dlt.extract.exceptions import ResourcesNotFoundError

        source = self._base().check_source(built)
        source = source.clone(with_name=part_schema_name(source.schema.name, self.part.key))
        if self.part.resources:
            try:
                source = source.with_resources(*self.part.resources)
            except ResourcesNotFoundError as err:
                raise FanoutConfigError(
                    f"part {self.name!r}: source {source.name!r} has no resources "
                    f"{self.part.resources}: {err}"
                ) from err
        return source

    def run_callbacks(self) -> tuple[Any, ...]:
        from flows.parts.schema_lock import SharedSchemaLock

        return (SharedSchemaLock(self._base().name),)


def part_spec(base: PipelineSpec, part: Part, options: dict[str, Any] | None = None) -> PartSpec:
    return PartSpec(
        name=part_name(base.name, part.key),
        source=base.source,
        dataset_name=base.dataset,
        destination=base.destination,
        description=f"part {part.key} of {base.name}",
        options={**base.options, **(options or {}), **part.source_kwargs()},
        declared_in=f"part {part.key} of {base.name} ({base.declared_in})",
        extract_options=base.extract_options,
        base=base,
        part=part,
    )


def destination_kind(spec: PipelineSpec) -> str:
    """`duckdb`, `postgres`, ... also for a named destination or a full reference."""
    from dlt.common.destination import Destination

    name = spec.destination_name()
    try:
        destination = Destination.from_reference(name)
    except Exception:  # an unknown reference fails later with dlt's own message
        return name
    assert destination is not None
    return destination.destination_type.rsplit(".", 1)[-1]


def parallelism_for(spec: PipelineSpec, requested: int | None) -> int:
    """How many parts may run at once: `requested`, else what the destination allows."""
    kind = destination_kind(spec)
    if requested is not None and requested < 1:
        raise FanoutConfigError(f"parallelism must be at least 1, not {requested}")
    if kind in SINGLE_WRITER:
        if requested is not None and requested > 1:
            raise FanoutConfigError(
                f"pipeline {spec.name!r} loads into {kind} ({SINGLE_WRITER[kind]}): parts "
                f"cannot load in parallel there; use parallelism 1, or a destination that "
                f"takes concurrent loads (postgres, filesystem, ...)"
            )
        return 1
    return requested or DEFAULT_PARALLELISM


def parts_in_store(store: StateStore, pipeline: str) -> list[str]:
    """Names of the parts of `pipeline` that have state in the store."""
    prefix = pipeline + PART_SEPARATOR
    return [name for name in store.list_names(store.path()) if name.startswith(prefix)]
