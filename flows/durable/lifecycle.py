"""The durable lifecycle of one run, in one place: `run_pipeline` (flows/durable/run.py, and
so the isolated attempt) and `runner.run` (a user's own pipeline) both go through it.

    with durable_session(name, destination, pipelines_dir, ...) as durable:
        pipeline = ...                # built, or re-attached, after the restore
        run, source = durable.start(pipeline, without_state=..., source=..., run_for=...)
        run.run(source)

1. the platform's dlt defaults for the destination and pipeline;
2. the lease taken and the newest snapshot restored (before `dlt.pipeline(...)` is made:
   dlt wipes a working dir that has no `state.json`);
3. the pipeline built or re-attached by the caller;
4. a run without state takes dlt's state from the destination (`sync_destination`), then
   removes the rows of loads the destination never completed (`start_without_state`, with
   the source's schema known), then tells the run its destination answered;
5. on leaving, the session is closed: the lease freed, old generations collected only after
   a run that succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import dlt

from flows import dlt_internals
from flows.config.settings import apply_platform_defaults, open_configured_store
from flows.durable.incomplete_loads import start_without_state
from flows.durable.resume import ResumePlan
from flows.state import StateSession
from flows.state.manifest import Manifest

DUCKDB = "dlt.destinations.duckdb"  # also a named destination of that type


class Run(Protocol):
    def destination_answered(self) -> None: ...


R = TypeVar("R", bound=Run)


@dataclass
class DurableSession:
    """A run's open session: its lease held, its newest snapshot (if any) restored."""

    session: StateSession
    restored: Manifest | None

    def no_local_state(self) -> bool:
        """Nothing restored and no `state.json` in the working dir: a pipeline made now
        starts with no state (call it before the pipeline is made)."""
        return self.restored is None and not (self.session.working_dir / "state.json").exists()

    def start(
        self,
        pipeline: dlt.Pipeline,
        *,
        without_state: bool,
        source: Callable[[], Any],
        run_for: Callable[[ResumePlan | None], R],
        only_existing_duckdb: bool = False,
    ) -> tuple[R, Any]:
        """Readies a run of `pipeline` (built or re-attached after the restore): when it has
        no state (`without_state`), dlt's state is taken from the destination, then
        `source()` is called, then the rows of loads the destination never completed are
        removed (their plan goes to `run_for`, which makes the run), then the run is told
        its destination answered. `only_existing_duckdb` skips all that for a local DuckDB
        file that is not there yet (`destination_exists`). Returns the run and the source."""
        synced = without_state and (not only_existing_duckdb or destination_exists(pipeline))
        if synced:
            # no snapshot and no local state: take dlt's state from the destination, if any,
            # so a lost bucket does not mean extracting everything again
            pipeline.sync_destination()
        data = source()
        # after the sync, with the source's schema known: see flows/durable/incomplete_loads.py
        run = run_for(start_without_state(pipeline, data) if synced else None)
        if synced:
            run.destination_answered()
        return run, data


@contextmanager
def durable_session(
    pipeline_name: str,
    destination: str | None,
    pipelines_dir: Path,
    *,
    state_url: str | None = None,
    run_id: str | None = None,
    wait: float = 0.0,
    lease_ttl: float | None = None,
    generation: int | None = None,
) -> Iterator[DurableSession]:
    """Applies the platform defaults, takes the lease and restores snapshot `generation`
    (default: the newest); on leaving frees the lease, collecting old generations only when
    the block succeeded."""
    apply_platform_defaults(destination, pipeline_name)
    session = StateSession(
        open_configured_store(state_url),
        pipeline_name,
        pipelines_dir,
        run_id=run_id,
        wait=wait,
        lease_ttl=lease_ttl,
    )
    restored = session.open(generation)
    ok = False
    try:
        yield DurableSession(session, restored)
        ok = True
    finally:
        session.close(collect=ok)


def destination_exists(pipeline: dlt.Pipeline) -> bool:
    """False for a local DuckDB file that is not there yet: it holds no state to sync, and
    dlt's sync would create and checkpoint it (0.2-0.4 s of a first run, measured here)."""
    if pipeline.destination is None or pipeline.destination.destination_type != DUCKDB:
        return True
    database = dlt_internals.duckdb_database(dlt_internals.sync_destination_client(pipeline))
    return database.exists() if database is not None else True
