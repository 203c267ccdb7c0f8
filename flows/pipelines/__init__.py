"""Pipelines: a name, a source factory, a destination and a dataset (see `spec.py`)."""

from flows.pipelines.registry import PIPELINES, get_spec
from flows.pipelines.spec import PipelineSpec

__all__ = ["PIPELINES", "PipelineSpec", "get_spec"]
