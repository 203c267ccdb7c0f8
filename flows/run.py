"""One call that runs a named pipeline durably: lease, restore, build, run, snapshot, release."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tenacity
from dlt.common.runtime.collector import Collector
from dlt.sources import DltSource

from flows.pipelines import get_spec
from flows.runner import RunListener, RunReport, runner
from flows.settings import apply_platform_defaults, default_pipelines_dir, default_state_url
from flows.state import StateSession, open_store
from flows.workers import die_with_parent

log = logging.getLogger(__name__)


def run_pipeline(
    name: str,
    *,
    state_url: str | None = None,
    pipelines_dir: Path | None = None,
    run_id: str | None = None,
    wait: float = 0.0,
    lease_ttl: float = 120.0,
    full_refresh: bool = False,
    source_options: Mapping[str, Any] | None = None,
    source_factory: Callable[[], DltSource] | None = None,
    progress: Collector | None = None,
    listener: RunListener | None = None,
    retry_policy: tenacity.Retrying | None = None,
    generation: int | None = None,
) -> RunReport:
    """Runs pipeline `name` so that a retry on another machine resumes where this one stopped.

    `run_id` identifies one logical run across attempts (Prefect's flow run id): a retry with
    the same id may take over the lease of its dead predecessor at once. `generation` restores
    an older snapshot on purpose (recovery drills and tests). `source_factory` replaces the
    pipeline's own source (called after the restore, like the pipeline itself).
    """
    spec = get_spec(name)
    apply_platform_defaults(spec.destination_name(), spec.name)
    die_with_parent()  # normalize's forked workers must not outlive a killed run
    pipelines_dir = Path(pipelines_dir or default_pipelines_dir())
    store = open_store(state_url or default_state_url())
    session = StateSession(
        store, spec.name, pipelines_dir, run_id=run_id, wait=wait, lease_ttl=lease_ttl
    )
    restored = session.open(generation)
    ok = False
    try:
        fresh = restored is None and not (session.working_dir / "state.json").exists()
        pipeline = spec.build_pipeline(pipelines_dir, progress)
        if fresh:
            # no snapshot and no local state: take dlt's state from the destination, if any,
            # so a lost bucket does not mean extracting everything again
            pipeline.sync_destination()
        source = (
            spec.prepare_source(source_factory())
            if source_factory
            else (spec.build_source(**dict(source_options or {})))
        )
        report = runner(
            pipeline, retry_policy=retry_policy, session=session, listener=listener
        ).run(source, **spec.extract_kwargs(full_refresh=full_refresh))
        ok = True
        return report
    finally:
        session.close(collect=ok)
