"""A dlt collector that snapshots the working dir at step boundaries and during long loads.

dlt swallows exceptions raised in collector hooks, so a failed snapshot is recorded here
and raised by the runner after the step (`raise_failures`), never lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dlt.common.runtime.collector import Collector, NullCollector

from flows import dlt_internals
from flows.errors import PlatformError
from flows.state import SnapshotFailedError, StateSession
from flows.system.resources import release_memory

log = logging.getLogger(__name__)

SNAPSHOT_STEPS = ("extract", "normalize", "load")


class CheckpointCollector(Collector):
    """Wraps the pipeline's own collector (progress display, Prefect) and adds snapshots."""

    def __init__(
        self,
        session: StateSession,
        inner: Collector | None = None,
        load_interval: float | None = None,
    ) -> None:
        self.session = session
        self.inner = inner or NullCollector()
        self.load_interval = (
            session.load_snapshot_interval if load_interval is None else load_interval
        )
        self.failures: list[BaseException] = []
        self.step = ""
        self._jobs_since = 0
        self._last = time.monotonic()

    # progress -------------------------------------------------------------------------------

    def update(
        self,
        name: str,
        inc: int = 1,
        total: int | None = None,
        inc_total: int | None = None,
        message: str | None = None,
        label: str | None = None,
    ) -> None:
        self.inner.update(name, inc, total, inc_total, message, label)  # type: ignore[arg-type]
        if name == "Jobs" and label is None and inc > 0 and self.step.startswith("Load"):
            self._jobs_since += inc
            if time.monotonic() - self._last >= self.load_interval:
                self._checkpoint("load-jobs", opportunistic=True)

    def _start(self, step: str) -> None:
        self.step = step
        dlt_internals.start_collector(self.inner, step)

    def _stop(self) -> None:
        dlt_internals.stop_collector(self.inner)

    # trace hooks ----------------------------------------------------------------------------

    def on_start_trace(self, *args: Any) -> None:
        self.inner.on_start_trace(*args)

    def on_start_trace_step(self, *args: Any) -> None:
        self.inner.on_start_trace_step(*args)

    def on_end_trace_step(
        self, trace: Any, step: Any, pipeline: Any, step_info: Any, send_state: bool
    ) -> None:
        if step.step in SNAPSHOT_STEPS:
            # before the upload, so the snapshot does not raise the peak
            release_memory(collect_cycles=False)
            self._checkpoint(step.step)
        self.inner.on_end_trace_step(trace, step, pipeline, step_info, send_state)

    def on_end_trace(self, *args: Any) -> None:
        self.inner.on_end_trace(*args)

    # snapshots ------------------------------------------------------------------------------

    def _checkpoint(self, step: str, opportunistic: bool = False) -> None:
        try:
            self.session.snapshot(step, opportunistic)
            # this snapshot holds everything an earlier, failed one would have: the earlier
            # failure no longer decides the outcome
            self.failures.clear()
        except Exception as err:
            log.error("snapshot after %s failed: %s", step, err)
            self.failures.append(err)
        finally:
            self._jobs_since, self._last = 0, time.monotonic()

    def raise_failures(self) -> None:
        """Raises the first snapshot failure since the last call, if any: the platform's own
        error as it is (an unreachable store exits 5, a lost lease 3), anything else as a
        `SnapshotFailedError`."""
        if self.failures:
            first, self.failures = self.failures[0], []
            if isinstance(first, PlatformError):
                raise first
            raise SnapshotFailedError(
                f"snapshot of {self.session.pipeline_name!r} to {self.session.store.url} "
                f"failed: {first}"
            ) from first
