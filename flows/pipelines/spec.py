"""How a pipeline is built: destination from config, platform file format, load-id propagation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.common.normalizers.json.relational import DataItemNormalizer
from dlt.common.runtime.collector import Collector
from dlt.sources import DltSource

from flows.settings import LOADER_FILE_FORMATS, config_value, flows_home

# Nested rows carry the load id of their root row, so a partly loaded package can be
# removed from every table it touched before it is loaded again (see runner.py).
LOAD_ID_PROPAGATION: Any = {"root": {"_dlt_id": "_dlt_root_id", "_dlt_load_id": "_dlt_load_id"}}


@dataclass(frozen=True)
class PipelineSpec:
    """Everything needed to run one pipeline; sources stay free of pipeline concerns."""

    name: str
    source: Callable[..., DltSource]
    dataset_name: str
    description: str = ""
    extract_options: Mapping[str, Any] = field(default_factory=dict)

    def destination_name(self) -> str:
        return (
            config_value(f"pipelines.{self.name}.destination")
            or config_value("pipelines.destination")
            or "duckdb"
        )

    def destination(self) -> Destination[Any, Any]:
        name = self.destination_name()
        if name == "duckdb" and not config_value("destination.duckdb.credentials"):
            path = flows_home() / "warehouse" / f"flows_{self.name}.duckdb"
            path.parent.mkdir(parents=True, exist_ok=True)
            return dlt.destinations.duckdb(credentials=str(path))
        destination = Destination.from_reference(name)
        assert destination is not None
        return destination

    def loader_file_format(self) -> str | None:
        return config_value(f"pipelines.{self.name}.loader_file_format") or (
            LOADER_FILE_FORMATS.get(self.destination_name())
        )

    def build_source(self, **overrides: Any) -> DltSource:
        return self.prepare_source(self.source(**overrides))

    @staticmethod
    def prepare_source(source: DltSource) -> DltSource:
        """Platform settings every source gets, whoever built it."""
        DataItemNormalizer.update_normalizer_config(
            source.schema, {"propagation": LOAD_ID_PROPAGATION}
        )
        return source

    def build_pipeline(
        self, pipelines_dir: Path, progress: Collector | None = None
    ) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=self.name,
            pipelines_dir=str(pipelines_dir),
            destination=self.destination(),
            dataset_name=self.dataset_name,
            progress=progress,  # type: ignore[arg-type]  # dlt accepts None: no progress
        )

    def extract_kwargs(self, full_refresh: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(self.extract_options)
        if fmt := self.loader_file_format():
            kwargs["loader_file_format"] = fmt
        if full_refresh:
            kwargs["refresh"] = "drop_resources"
        return kwargs
