"""Finds the declared pipelines: dlt config and the `flows.pipelines` entry point group.

In the user's project, the dlt way (`.dlt/config.toml`, or env such as
`PIPELINES__MY_API__SOURCE`):

    [pipelines.my_api]
    source = "my_project.sources:api"      # module:function returning a dlt source/resource
    dataset_name = "my_api"
    destination = "duckdb"                 # optional: else pipelines.destination, else DuckDB
    description = "..."                    # optional
    checkpoint_every = 60                  # optional: seconds between extract checkpoints
    [pipelines.my_api.options]             # optional keyword arguments of the function
    page_size = 100

In an installed package, one entry point per pipeline (the platform's own pipelines are
declared this way, in its pyproject.toml):

    [project.entry-points."flows.pipelines"]
    my_api = "my_package.pipelines:my_api"   # a PipelineSpec, or a source function

Config declarations import nothing; an entry point's module is loaded to read it (keep it
light: a PipelineSpec names its source as a string).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from flows.pipelines.errors import (
    DeclarationError,
    DuplicatePipelineError,
    SourceImportError,
    UnknownPipelineError,
)
from flows.pipelines.spec import PipelineSpec, import_reference, parse_seconds

ENTRY_POINT_GROUP = "flows.pipelines"
DECLARATION_KEYS = {
    "source",
    "dataset_name",
    "destination",
    "description",
    "options",
    "checkpoint_every",
}


@dataclass(frozen=True)
class Catalog:
    """The discovered pipelines by name, and where declarations were looked for."""

    pipelines: Mapping[str, PipelineSpec]
    searched: tuple[str, ...]

    def get(self, name: str) -> PipelineSpec:
        try:
            return self.pipelines[name]
        except KeyError:
            raise UnknownPipelineError(
                f"unknown pipeline {name!r}: not declared in {self.where()}; "
                f"known pipelines: {', '.join(sorted(self.pipelines)) or 'none'}",
                known=self.pipelines,
            ) from None

    def where(self) -> str:
        return " or ".join(self.searched)

    @contextmanager
    def known_names(self) -> Iterator[None]:
        """Declaration errors raised inside (a source that does not import or returns no
        source) also name the known pipelines, so that one line says what to pick."""
        try:
            yield
        except DeclarationError as err:
            if err.known is not None:
                raise
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise type(err)(f"{err}; known pipelines: {known}", self.pipelines) from err.__cause__


def discover() -> Catalog:
    """Every declaration; two with one name are refused (naming both places)."""
    found: dict[str, PipelineSpec] = {}
    for spec in [*_from_config(), *_from_entry_points()]:
        if spec.name in found:
            raise DuplicatePipelineError(
                f"pipeline {spec.name!r} is declared twice: in {found[spec.name].declared_in} "
                f"and in {spec.declared_in}; rename one (known pipelines: "
                f"{', '.join(sorted({*found, spec.name}))})",
                known={*found, spec.name},
            )
        found[spec.name] = spec
    return Catalog(found, (*config_locations(), f"entry points {ENTRY_POINT_GROUP!r}"))


def get_spec(name: str) -> PipelineSpec:
    return discover().get(name)


def resolve(pipeline: str | PipelineSpec) -> tuple[Catalog, PipelineSpec]:
    """Where a pipeline enters a run (`run_pipeline`, which `flows run` and an attempt call):
    a declared name becomes its declaration, an ad hoc spec stays as it is. The name is
    checked first (it names a folder and keys in the store); the catalog names the known
    pipelines in a declaration error (`Catalog.known_names`)."""
    from flows.state.names import validate_pipeline_name  # flows.state imports dlt

    if isinstance(pipeline, str):
        validate_pipeline_name(pipeline)
        catalog = discover()
        return catalog, catalog.get(pipeline)
    validate_pipeline_name(pipeline.name)
    return discover(), pipeline


def config_locations() -> list[str]:
    """The dlt config files that exist (absolute), else where dlt looks for config.toml."""
    import dlt

    present: list[str] = []
    possible: list[str] = []
    for provider in dlt.config.config_providers:
        if provider.name == "config.toml":
            possible += [str(Path(p).resolve()) for p in provider.locations[:1]]
        if provider.name in ("config.toml", "secrets.toml"):
            present += [str(Path(p).resolve()) for p in provider.present_locations]
    return present or possible


def _from_config() -> Iterator[PipelineSpec]:
    """`[pipelines.<name>]` tables with a `source`, from every provider that has them."""
    import dlt

    seen: set[str] = set()
    for provider in dlt.config.config_providers:
        if provider.name == "Environment Variables":
            yield from _from_env(seen)
            continue
        try:
            table, _ = provider.get_value("pipelines", dict, None)
        except Exception:  # a provider without tables
            continue
        if not isinstance(table, Mapping):
            continue
        location = next(iter(provider.present_locations), "") or provider.name
        where = str(Path(location).resolve()) if os.sep in location else location
        for name, body in table.items():
            if isinstance(body, Mapping) and "source" in body and name not in seen:
                seen.add(name)
                yield _spec_from_table(name, body, f"{where} [pipelines.{name}]")


def _from_env(seen: set[str]) -> Iterator[PipelineSpec]:
    for key, value in sorted(os.environ.items()):
        parts = key.split("__")
        if len(parts) == 3 and parts[0] == "PIPELINES" and parts[2] == "SOURCE":
            name = parts[1].lower()
            if name in seen:
                continue
            seen.add(name)
            body: dict[str, Any] = {"source": value}
            for field in DECLARATION_KEYS - {"source", "options"}:
                if (v := os.environ.get(f"PIPELINES__{parts[1]}__{field.upper()}")) is not None:
                    body[field] = v
            yield _spec_from_table(name, body, f"env {key}")


def _spec_from_table(name: str, body: Mapping[str, Any], where: str) -> PipelineSpec:
    options = body.get("options") or {}
    if not isinstance(body["source"], str) or not isinstance(options, Mapping):
        raise DeclarationError(
            f"pipeline {name!r} ({where}): 'source' must be 'module:function' and 'options' a table"
        )
    return PipelineSpec(
        name=name,
        source=body["source"],
        dataset_name=str(body.get("dataset_name") or ""),
        destination=body.get("destination"),
        description=str(body.get("description") or ""),
        options=dict(options),
        declared_in=where,
        checkpoint_every=(
            parse_seconds(body["checkpoint_every"], f"{where} checkpoint_every")
            if body.get("checkpoint_every") is not None
            else None
        ),
    )


def _from_entry_points() -> Iterator[PipelineSpec]:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        yield _spec_from_entry_point(ep)


def _spec_from_entry_point(ep: EntryPoint) -> PipelineSpec:
    dist = f" of {ep.dist.name}" if ep.dist is not None else ""
    where = f"entry point {ep.name} = {ep.value!r}{dist}"
    if ":" not in ep.value:
        raise DeclarationError(f"{where}: must name 'module:object'")
    try:
        obj: Any = import_reference(ep.value, f"pipeline {ep.name!r} ({where})", False)
    except SourceImportError:
        obj = None  # listed all the same; running it reports the import error
    if isinstance(obj, PipelineSpec):
        return replace(obj, name=ep.name, declared_in=where)
    # a bare source function: the entry point's name is the pipeline and dataset name
    return PipelineSpec(name=ep.name, source=ep.value, declared_in=where)
