"""One run's hold on a pipeline's state: lease, restore before dlt starts, snapshots after."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.state.config import state_config
from flows.state.errors import LeaseLostError
from flows.state.lease import Lease
from flows.state.manifest import FileEntry, Manifest
from flows.state.snapshot import (
    HashCache,
    PipelineLayout,
    collect_garbage,
    describe_working_dir,
    publish_snapshot,
    restore_snapshot,
)
from flows.state.store import StateStore

log = logging.getLogger(__name__)


@dataclass
class SnapshotStats:
    """What the snapshots of this run cost; read by reports and benchmarks."""

    snapshots: int = 0
    skipped: int = 0
    seconds: float = 0.0
    bytes_restored: int = 0
    bytes_uploaded: int = 0
    restored_generation: int = 0
    steps: list[str] = field(default_factory=list)


class StateSession:
    """Holds the lease, restores the newest snapshot, and writes one per step boundary.

    Open it before `dlt.pipeline(...)`: dlt wipes a working dir that has no `state.json`.
    """

    def __init__(
        self,
        store: StateStore,
        pipeline_name: str,
        pipelines_dir: Path,
        *,
        run_id: str | None = None,
        lease_ttl: float | None = None,
        wait: float = 0.0,
        keep_generations: int | None = None,
        lease_settle: float = 0.5,
    ) -> None:
        config = state_config()
        lease_ttl = lease_ttl or config.lease_ttl
        keep_generations = keep_generations or config.keep_generations
        self.load_snapshot_interval = config.load_snapshot_interval
        self.store = store
        self.layout = PipelineLayout(store, pipeline_name)
        self.pipeline_name = pipeline_name
        self.working_dir = Path(pipelines_dir) / pipeline_name
        self.keep_generations = keep_generations
        self.lease = Lease(
            store,
            self.layout.lease_path,
            ttl=lease_ttl,
            run_id=run_id,
            wait=wait,
            settle=lease_settle,
        )
        self.run_id = run_id
        # set once this run's extract is in a snapshot (or was, by an earlier attempt)
        self.extracted_by: str | None = None
        # carried by every manifest this run writes (Manifest.progress); set by the runner
        self.progress: dict[str, Any] = {}
        self.generation = 0
        self.restored: Manifest | None = None
        self.stats = SnapshotStats()
        self._cache = HashCache()
        self._known_blobs: set[str] = set()
        self._last_listing: tuple[list[FileEntry], list[str]] | None = None
        self._last_progress: dict[str, Any] = {}

    def open(self, generation: int | None = None) -> Manifest | None:
        """Takes the lease and restores a snapshot (the newest unless `generation` is given).

        The bucket is checked first: nothing is written to a store that is not there.
        """
        self.store.check_bucket()
        self.lease.acquire()
        try:
            latest = self.layout.latest_generation()
            target = latest if generation is None else generation
            self.generation = latest
            if target:
                manifest = self.layout.read_manifest(target)
                self.stats.bytes_restored = restore_snapshot(
                    self.layout, manifest, self.working_dir, self._cache
                )
                self.restored, self.stats.restored_generation = manifest, target
                self.progress = dict(manifest.progress)
                if self.run_id is not None and manifest.extracted_by == self.run_id:
                    self.extracted_by = self.run_id
                self._last_listing = (manifest.files, manifest.dirs)
                self._last_progress = dict(manifest.progress)
                log.info(
                    "restored %s generation %d (%d files, %d bytes fetched) from %s",
                    self.pipeline_name,
                    target,
                    len(manifest.files),
                    self.stats.bytes_restored,
                    self.store.url,
                )
            self._known_blobs = self.layout.blob_names()
        except BaseException:
            self.lease.release()
            raise
        return self.restored

    @property
    def extract_done(self) -> bool:
        """True when an earlier attempt of this run (same run id) committed its extract: a
        retry finishes what is pending and does not extract again (a source without a cursor
        would yield the same rows twice)."""
        return self.run_id is not None and self.extracted_by == self.run_id

    def snapshot(self, step: str, opportunistic: bool = False) -> Manifest | None:
        """Publishes the working dir as the next generation; None when nothing changed.

        `opportunistic` snapshots (during a load, while dlt moves files) are skipped when a
        file vanishes under them; the step-boundary snapshot that follows is not.
        """
        started = time.perf_counter()
        self.lease.verify()
        latest = self.layout.latest_generation()
        if latest != self.generation:
            self._adopt_own_generations(latest)
        try:
            entries, dirs, sources = describe_working_dir(self.working_dir, self._cache)
            marks_extract = step == "extract" and self.extracted_by != self.run_id
            unchanged = (entries, dirs) == self._last_listing
            unchanged = unchanged and self.progress == self._last_progress
            if unchanged and not marks_extract:
                self.stats.skipped += 1
                return None
            manifest = Manifest(
                pipeline_name=self.pipeline_name,
                generation=self.generation + 1,
                step=step,
                owner=self.lease.info.holder if self.lease.info else "",
                lease_token=self.lease.token,
                files=entries,
                dirs=dirs,
                extracted_by=self.run_id if step == "extract" else self.extracted_by,
                progress=dict(self.progress),
            )
            staging = self.working_dir.parent / f".snapshot-{self.pipeline_name}"
            self.stats.bytes_uploaded += publish_snapshot(
                self.layout, manifest, sources, self._known_blobs, staging, self.lease.check
            )
        except FileNotFoundError as err:
            if not opportunistic:
                raise
            log.info("snapshot during %s skipped: %s moved while it was read", step, err)
            self.stats.skipped += 1
            return None
        self.generation = manifest.generation
        self.extracted_by = manifest.extracted_by
        self.stats.snapshots += 1
        self.stats.steps.append(step)
        self.stats.seconds += time.perf_counter() - started
        self._last_listing = (entries, dirs)
        self._last_progress = dict(manifest.progress)
        return manifest

    def _adopt_own_generations(self, latest: int) -> None:
        """Takes generations after the last one this run knows as its own when each carries
        this lease's token: a manifest the store committed while the run saw an error (a
        lost reply, then a retry window that ran out). Any other writer's generation means
        another writer took over: LeaseLostError, nothing is written."""
        manifests = [
            self.layout.read_manifest(g) for g in self.layout.generations() if g > self.generation
        ]
        mine = [m for m in manifests if m.lease_token == self.lease.token]
        if latest < self.generation or not manifests or len(mine) != len(manifests):
            raise LeaseLostError(
                f"{self.store.url_of(self.pipeline_name)} has generation {latest}, this run "
                f"wrote {self.generation}: another writer took over, refusing to overwrite"
            )
        newest = mine[-1]
        log.info("generation %d of %s was committed by this run", latest, self.pipeline_name)
        self.generation = newest.generation
        self.extracted_by = newest.extracted_by
        self._last_listing = (newest.files, newest.dirs)
        self._last_progress = dict(newest.progress)

    def close(self, collect: bool = True) -> None:
        """Drops generations beyond `keep_generations` (after a good run) and frees the lease."""
        try:
            if collect and self.generation:
                collect_garbage(self.layout, self.keep_generations)
        finally:
            self.lease.release()

    def __enter__(self) -> StateSession:
        self.open()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(collect=exc_type is None)
