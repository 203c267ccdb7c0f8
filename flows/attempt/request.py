"""One task attempt: the pipeline run with its collector, in an empty working dir.

Free of prefect imports: it runs in the isolated child (artifacts go to the parent as
messages) as well as in the task's own process (`isolate=False`, artifacts go to the API).
Importing it imports no dlt: the engine only builds the request (flows/errors.py says why).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flows.pipelines import PipelineSpec
from flows.pipelines.spec import import_reference
from flows.progress.artifacts import RunTarget, Sink
from flows.progress.lineage import LineageRun

if TYPE_CHECKING:
    from dlt.sources import DltSource


@dataclass(frozen=True)
class Attempt:
    """What the attempt's process needs; a spawned child receives it pickled."""

    pipeline: str
    # what returns the dlt source (None: the declared one, with `kwargs` as its options):
    # "module:qualname" when an import finds it (dlt's source wrappers do not pickle by
    # value), else the function itself, pickled by value
    source: Callable[..., DltSource] | str | None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    state_url: str | None = None
    lease_wait: float = 0.0
    flow_run_id: str | None = None
    task_run_id: str | None = None
    # the logical run in the state store: the flow run and this call's place in it (a
    # retry or crash rerun of the flow run gets the same), so a retry resumes the call's
    # own extract and a second call of the pipeline in one flow run is a run of its own
    run_key: str | None = None
    attempt: int = 1
    # an undeclared pipeline (`@dlt_task(pipeline_name=...)`): its whole declaration
    spec: PipelineSpec | None = None
    # the attempt's empty working dir, made by whoever removes it when the attempt is over
    # (the parent of an isolated attempt: a killed child cannot); None: a new one here
    workdir: str | None = None
    # OpenLineage: the dlt run's id and parents (None: lineage is not configured)
    lineage: LineageRun | None = None

    def build_source(self) -> DltSource:
        fn = self.source
        assert fn is not None
        if isinstance(fn, str):
            fn = import_reference(fn, f"pipeline {self.pipeline!r}")
        return fn(*self.args, **self.kwargs)

    @property
    def target(self) -> RunTarget:
        return RunTarget(
            UUID(self.flow_run_id) if self.flow_run_id else None,
            UUID(self.task_run_id) if self.task_run_id else None,
        )


def new_workdir(pipeline: str) -> str:
    """An empty working dir for one attempt of `pipeline`, under TMPDIR."""
    return tempfile.mkdtemp(prefix=f"flows-{pipeline}-")


def run_attempt(attempt: Attempt, sink: Sink) -> dict[str, Any]:
    """Runs the attempt and returns the run report as a dict; artifacts go to `sink`."""
    from flows.durable.run import run_pipeline  # dlt: only in the attempt's process
    from flows.progress.collector import ProgressCollector
    from flows.progress.lineage_events import LineageCallbacks

    collector = ProgressCollector(sink, pipeline_name=attempt.pipeline)
    workdir = attempt.workdir or new_workdir(attempt.pipeline)
    try:
        report = run_pipeline(
            attempt.spec or attempt.pipeline,
            state_url=attempt.state_url,
            pipelines_dir=Path(workdir),  # empty, like a new pod: state comes from the store
            run_id=attempt.run_key or attempt.flow_run_id,
            wait=attempt.lease_wait,
            full_refresh=attempt.full_refresh,
            source_options=attempt.kwargs if attempt.source is None else None,
            source_factory=None if attempt.source is None else attempt.build_source,
            progress=collector,
            listener=collector,
            callbacks=(LineageCallbacks(attempt.lineage),) if attempt.lineage else (),
        )
        collector.on_run_finished(report, "completed", attempt.attempt)
        return asdict(report)
    except BaseException as err:
        collector.on_attempt_failed("run", attempt.attempt, err)
        raise
    finally:
        collector.close()
        shutil.rmtree(workdir, ignore_errors=True)
