"""One call that runs a declared pipeline durably: lease, restore, build, run, snapshot, release."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tenacity
from dlt.common.runtime.collector import Collector

from flows.config.settings import default_pipelines_dir
from flows.durable import segments
from flows.durable.lifecycle import durable_session
from flows.durable.resume import ResumePlan
from flows.durable.runner import RunCallbacks, RunListener, RunReport, runner
from flows.pipelines import PipelineSpec, resolve
from flows.pipelines.persistence import refuse_scratch_duckdb
from flows.system.resources import free_large_blocks_at_once

log = logging.getLogger(__name__)


def run_pipeline(
    name: str | PipelineSpec,
    *,
    state_url: str | None = None,
    pipelines_dir: Path | None = None,
    run_id: str | None = None,
    wait: float = 0.0,
    lease_ttl: float | None = None,
    full_refresh: bool = False,
    source_options: Mapping[str, Any] | None = None,
    source_factory: Callable[[], Any] | None = None,
    progress: Collector | None = None,
    listener: RunListener | None = None,
    callbacks: tuple[RunCallbacks, ...] = (),
    retry_policy: tenacity.Retrying | None = None,
    generation: int | None = None,
    checkpoint_every: float | None = None,
) -> RunReport:
    """Runs pipeline `name` (or an ad hoc spec) so that a retry on another machine resumes
    where this one stopped.

    The declaration is checked first: an unknown name, a source that does not import or a
    plain function that returns no dlt source fails before the lease is taken. A dlt source
    factory is called once the pipeline is attached to its restored state (its body may read
    that state or reach its system: see `PipelineSpec.builds_lazily`). `run_id` identifies
    one logical run across attempts (Prefect's flow run id): a retry with the same id revokes
    the lease of an earlier attempt and takes it once that attempt can no longer write
    (state/lease.py). `generation` restores an older
    snapshot on purpose (recovery drills and tests). `source_factory` replaces the
    declared source function's call. `checkpoint_every` (seconds, 0: off) overrides the
    pipeline's setting (flows/durable/segments.py); a source that cannot resume from its
    cursor is refused when either sets it.
    """
    free_large_blocks_at_once()
    catalog, spec = resolve(name)
    options = dict(source_options or {})
    every = checkpoint_every if checkpoint_every is not None else spec.checkpoint_setting()
    with catalog.known_names():
        early = None if source_factory or spec.builds_lazily() else spec.build_source(**options)
    if early is not None:
        segments.plan_segments(early, every, spec.name)  # refused before the lease is taken
    destination = spec.destination_name()
    refuse_scratch_duckdb(spec)
    pipelines_dir = Path(pipelines_dir or default_pipelines_dir())
    with durable_session(
        spec.name,
        destination,
        pipelines_dir,
        state_url=state_url,
        run_id=run_id,
        wait=wait,
        lease_ttl=lease_ttl,
        generation=generation,
    ) as durable:
        without_state = durable.no_local_state()
        pipeline = spec.build_pipeline(pipelines_dir, progress)

        def fresh_source() -> Any:
            with catalog.known_names():
                if source_factory:
                    return spec.check_source(source_factory())
                return spec.build_source(**options)

        def source() -> Any:
            return early or fresh_source()

        def run_for(started_without_state: ResumePlan | None) -> runner:
            return runner(
                pipeline,
                retry_policy=retry_policy,
                session=durable.session,
                listener=listener,
                callbacks=(*callbacks, *spec.run_callbacks()),
                started_without_state=started_without_state,
            )

        run, data = durable.start(
            pipeline,
            without_state=without_state,
            source=source,
            run_for=run_for,
            only_existing_duckdb=True,
        )
        run.segments = segments.plan_segments(data, every, spec.name)
        run.next_source = fresh_source
        run.run(data, **spec.extract_kwargs(full_refresh=full_refresh))
        assert run.report is not None
        return run.report
