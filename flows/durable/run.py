"""One call that runs a declared pipeline durably: lease, restore, build, run, snapshot, release."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dlt
import tenacity
from dlt.common.runtime.collector import Collector
from dlt.common.schema import Schema
from dlt.common.schema.utils import normalize_schema_name
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from flows.config.settings import (
    apply_platform_defaults,
    default_pipelines_dir,
    open_configured_store,
)
from flows.durable.incomplete_loads import start_without_state
from flows.durable.runner import RunCallbacks, RunListener, RunReport, runner
from flows.pipelines import PipelineSpec, resolve
from flows.pipelines.persistence import refuse_scratch_duckdb
from flows.state import StateSession
from flows.system.resources import free_large_blocks_at_once

log = logging.getLogger(__name__)
DUCKDB = "dlt.destinations.duckdb"  # also a named destination of that type


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
    declared source function's call.
    """
    free_large_blocks_at_once()
    catalog, spec = resolve(name)
    options = dict(source_options or {})
    with catalog.known_names():
        early = None if source_factory or spec.builds_lazily() else spec.build_source(**options)
    destination = spec.destination_name()
    refuse_scratch_duckdb(spec)
    apply_platform_defaults(destination, spec.name)
    pipelines_dir = Path(pipelines_dir or default_pipelines_dir())
    session = StateSession(
        open_configured_store(state_url),
        spec.name,
        pipelines_dir,
        run_id=run_id,
        wait=wait,
        lease_ttl=lease_ttl,
    )
    restored = session.open(generation)
    ok = False
    try:
        fresh = restored is None and not (session.working_dir / "state.json").exists()
        pipeline = spec.build_pipeline(pipelines_dir, progress)
        synced = fresh and _destination_exists(pipeline)
        if synced:
            # no snapshot and no local state: take dlt's state from the destination, if any,
            # so a lost bucket does not mean extracting everything again
            pipeline.sync_destination()
        with catalog.known_names():
            source = early or (
                spec.check_source(source_factory())
                if source_factory
                else spec.build_source(**options)
            )
        run = runner(
            pipeline,
            retry_policy=retry_policy,
            session=session,
            listener=listener,
            callbacks=(*callbacks, *spec.run_callbacks()),
            # after the sync, with the source's schema known: see flows/durable/incomplete_loads.py
            started_without_state=start_without_state(pipeline, source) if synced else None,
        )
        if synced:
            run.destination_answered()
        run.run(source, **spec.extract_kwargs(full_refresh=full_refresh))
        ok = True
        assert run.report is not None
        return run.report
    finally:
        session.close(collect=ok)


def _destination_exists(pipeline: dlt.Pipeline) -> bool:
    """False for a local DuckDB file that is not there yet: it holds no state to sync, and
    dlt's sync would create and checkpoint it (0.2-0.4 s of a first run, measured here)."""
    if pipeline.destination is None or pipeline.destination.destination_type != DUCKDB:
        return True
    # the client dlt's own sync opens: `destination_client()` would name its ad hoc schema
    # after the pipeline, which dlt refuses for fan-out parts (`daily_events--20240101-...`)
    schema = Schema(normalize_schema_name(pipeline.pipeline_name))
    client = pipeline._get_destination_clients(schema)[0]
    credentials = getattr(client.config, "credentials", None)
    if isinstance(credentials, DuckDbCredentials) and credentials.external_conn() is None:
        return Path(credentials.database).exists()
    return True
