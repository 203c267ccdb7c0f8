"""Pipelines: declarations found in the user's dlt config and in installed packages'
entry points (see `discovery.py`), each a source, a dataset and a destination."""

from flows.pipelines.discovery import ENTRY_POINT_GROUP, Catalog, discover, get_spec, resolve
from flows.pipelines.spec import PipelineSpec

__all__ = ["ENTRY_POINT_GROUP", "Catalog", "PipelineSpec", "discover", "get_spec", "resolve"]
