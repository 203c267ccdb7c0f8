"""Runs a dlt pipeline step by step: resume what is pending, retry transient failures.

    load_info = runner(pipeline, retry_policy=tenacity.Retrying(...),
                       retry_pipeline_steps=["extract", "normalize", "load"]).run(source)

Durable by default: the run takes the pipeline's lease in the configured state store
(`STATE__URL`, else the local store under `$FLOWS_HOME/state`), restores the newest snapshot
into the pipeline's working dir, re-attaches the pipeline to it and snapshots at every step
boundary. It returns dlt's `LoadInfo`; the platform's `RunReport` is `runner.report` (and
`load_info.report`).

Steps are called one by one instead of `pipeline.run()`: `run()` with pending packages only
finishes them and drops the new data, and its destination sync wipes a restored working dir
on a first run (the dataset not yet at the destination).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dlt
import tenacity
from dlt.common.pipeline import LoadInfo

from flows import dlt_internals
from flows.config.settings import (
    default_extract_options,
    normalize_step_values,
    platform_values,
)
from flows.durable import fencing, segments
from flows.durable.checkpoint import CheckpointCollector
from flows.durable.lifecycle import durable_session
from flows.durable.reattach import reattach
from flows.durable.report import (
    CheckpointReport,
    FinalReportToCollector,
    RunCallbacks,
    RunListener,
    RunReport,
    SegmentReport,
    StepReport,
    listener_of,
)
from flows.durable.resume import (
    ResumePlan,
    package_dir,
    package_row_counts,
    prepare_normalized_packages,
)
from flows.durable.retries import (
    ATTEMPTS,
    TRANSIENT_WINDOW,
    default_retry_policy,
    stop_unless_transient,
)
from flows.durable.segments import Segments
from flows.errors import is_terminal, is_transient, root_cause
from flows.state import StateSession
from flows.system import logins
from flows.system.workers import share_and_die_with_parent

# moved to flows/durable/report.py and retries.py; imported from here by users and tests
__all__ = [
    "ATTEMPTS",
    "STEPS",
    "TRANSIENT_WINDOW",
    "RunCallbacks",
    "RunListener",
    "RunReport",
    "StepReport",
    "default_retry_policy",
    "extracted_rows",
    "runner",
    "stop_unless_transient",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

STEPS = ("extract", "normalize", "load")


class runner:
    """Step-wise execution with resume and in-process retries of the named steps.

    `session` is an open `StateSession` the caller manages; without one the run opens its
    own on `state_url` (default: the configured store) unless `durable=False`.
    """

    def __init__(
        self,
        pipeline: dlt.Pipeline,
        retry_policy: tenacity.Retrying | None = None,
        retry_pipeline_steps: Sequence[str] = STEPS,
        session: StateSession | None = None,
        listener: RunListener | None = None,
        callbacks: Sequence[RunCallbacks] = (),
        *,
        durable: bool = True,
        state_url: str | None = None,
        run_id: str | None = None,
        lease_wait: float = 0.0,
        started_without_state: ResumePlan | None = None,
        segments: Segments | None = None,
        next_source: Callable[[], Any] | None = None,
    ) -> None:
        unknown = set(retry_pipeline_steps) - set(STEPS)
        if unknown:
            raise ValueError(f"retry_pipeline_steps has unknown steps {sorted(unknown)}")
        self.pipeline = pipeline
        self.retry_policy = retry_policy or default_retry_policy(self._rides_out)
        self.retry_steps = set(retry_pipeline_steps)
        self.session = session
        # a PrefectCollector passed as `progress=` also hears about failed attempts and gets
        # the final report, as it does in the platform's own tasks
        detected = None if listener is not None else listener_of(pipeline.collector)
        self.listener = listener or detected
        self.callbacks = list(callbacks)
        if detected is not None and hasattr(detected, "on_run_finished"):
            self.callbacks.append(FinalReportToCollector(detected))
        self.durable = durable
        self.state_url = state_url
        self.run_id = run_id
        self.lease_wait = lease_wait
        # what `start_without_state` repaired before the runner existed (flows/durable/run.py)
        self.started_without_state = started_without_state
        # a checkpointed extract (flows/durable/segments.py): `next_source` makes the source
        # of each segment after the first
        self.segments = segments
        self.next_source = next_source
        self.checkpoints: CheckpointCollector | None = None
        self.report: RunReport | None = None
        # the destination answered during this run's load: its credentials and address work,
        # so a connection it drops now is a restart or a network blip, worth riding out
        self._destination_answered = False
        self._current_step = ""
        # packages normalized here and not yet attempted: no destination check needed
        self._trusted: set[str] = set()
        self._load_infos: list[Any] = []
        self._last_error: BaseException | None = None
        if session is not None:
            self._attach_checkpoints(session)

    def _attach_checkpoints(self, session: StateSession) -> None:
        inner = self.pipeline.collector
        if isinstance(inner, CheckpointCollector):
            inner = inner.inner
        self.checkpoints = CheckpointCollector(session, inner=inner)
        self.pipeline.collector = self.checkpoints

    def run(self, data: Any, **extract_kwargs: Any) -> LoadInfo:
        """Resumes what is pending, then extracts, normalizes and loads `data`."""
        logins.install()  # a wrong database password is named and never retried
        if self.session is not None or not self.durable:
            return self._run(data, extract_kwargs)
        pipeline = self.pipeline
        with durable_session(
            pipeline.pipeline_name,
            pipeline.destination.destination_name,
            Path(pipeline.pipelines_dir),
            state_url=self.state_url,
            run_id=self.run_id,
            wait=self.lease_wait,
        ) as durable:
            try:
                reattach(pipeline)

                def run_for(started_without_state: ResumePlan | None) -> runner:
                    if started_without_state is not None:
                        self.started_without_state = started_without_state
                    self.session = durable.session
                    self._attach_checkpoints(durable.session)
                    return self

                # nothing stored and nothing local: dlt's state from the destination, if any,
                # and no rows of a load it never completed (their cursor is not in that state)
                durable.start(
                    pipeline,
                    without_state=durable.restored is None and pipeline.first_run,
                    source=lambda: data,
                    run_for=run_for,
                )
                return self._run(data, extract_kwargs)
            finally:
                self.session = None
                if self.checkpoints is not None:
                    self.pipeline.collector = self.checkpoints.inner
                    self.checkpoints = None

    def _run(self, data: Any, extract_kwargs: dict[str, Any]) -> LoadInfo:
        started = time.perf_counter()
        share_and_die_with_parent()  # normalize's forked workers (flows/system/workers.py)
        report = self.report = RunReport(
            self.pipeline.pipeline_name,
            self.pipeline.destination.destination_name,
            self.pipeline.dataset_name,
        )
        self._load_infos = []
        error: BaseException | None = None
        try:
            self._finish_pending(report)
            if self.segments is not None:
                report.checkpoints.every = self.segments.every
                report.checkpoints.why = self.segments.why
            if self.segments is not None and self.segments.every:
                # a source that resumes from its cursor: a retry extracts from where the last
                # committed segment ended, whatever an earlier attempt did
                self._extract_in_segments(report, data, self.segments.every, extract_kwargs)
            elif self.session is not None and self.session.extract_done:
                # an earlier attempt of this run committed its extract: what it extracted
                # was finished above; extracting again would repeat it
                report.extract_skipped = True
                log.info("extract skipped: run %s committed it before", self.session.run_id)
            else:
                kwargs = {**default_extract_options(self.pipeline), **extract_kwargs}
                info = self._step(report, "extract", lambda: self.pipeline.extract(data, **kwargs))
                report.extracted_rows = extracted_rows(info)
            self._normalize(report)
            self._load(report)
            if self.session is not None:
                self.session.progress = {}  # the extract is complete: nothing to resume
                # a step-boundary snapshot that failed is retried here: the run is not done
                # until its state is durable (nothing is sent when nothing changed)
                self.session.snapshot("final")
        except BaseException as err:
            error = err
            raise
        finally:
            report.snapshots = self.session.stats if self.session else None
            report.lease_takeover = bool(self.session and self.session.lease.took_over)
            report.seconds = time.perf_counter() - started
            for callback in self.callbacks:
                callback.on_run_end(self.pipeline, report, error)
        return self._load_info(report)

    def _extract_in_segments(
        self, report: RunReport, data: Any, every: float, extract_kwargs: dict[str, Any]
    ) -> None:
        """Extracts, normalizes and loads `data` in segments of at most `every` seconds of
        extract, each committed (snapshotted after its load) before the next one begins,
        until a segment's bound stopped no resource, or it brought no rows: the source is
        exhausted."""
        checkpoints = report.checkpoints
        before = dict(self.session.progress) if self.session is not None else {}
        checkpoints.resumed_segments = int(before.get("segments", 0))
        checkpoints.rows_not_extracted = int(before.get("rows", 0))
        kwargs = dict(extract_kwargs)
        while True:
            source = segments.bound(data, every)
            started = time.perf_counter()
            info = self._step(
                report, "extract", functools.partial(self.pipeline.extract, source, **kwargs)
            )
            took = time.perf_counter() - started
            rows = extracted_rows(info)
            for table, count in rows.items():
                report.extracted_rows[table] = report.extracted_rows.get(table, 0) + count
            new = sum(n for table, n in rows.items() if not table.startswith("_dlt"))
            if self.session is not None:
                # in the manifests from here on: a rerun says what it did not extract again
                self.session.progress = {
                    "segments": checkpoints.resumed_segments + len(checkpoints.segments) + 1,
                    "rows": checkpoints.rows_not_extracted + _rows(checkpoints) + new,
                }
            self._normalize(report)
            self._load(report)
            segment = SegmentReport(new, took, segments.cursors(self.pipeline.state, source))
            checkpoints.segments.append(segment)
            log.info(
                "checkpoint %d committed: %d rows in %.1f s, cursor %s",
                len(checkpoints.segments),
                new,
                took,
                segment.cursor,
            )
            if not segments.cut_short(source) or not new or self.next_source is None:
                return  # the source is exhausted
            data = self.next_source()
            kwargs.pop("refresh", None)  # a full refresh drops tables before the first only

    def _load_info(self, report: RunReport) -> LoadInfo:
        """dlt's LoadInfo of this run (every package it loaded), with the report attached."""
        if self._load_infos:
            info = dlt_internals.merged_load_info(self._load_infos)
        else:
            info = dlt_internals.empty_load_info(self.pipeline)
        dlt_internals.attach_to_load_info(info, "report", report)
        return info

    def _finish_pending(self, report: RunReport) -> None:
        if self.started_without_state is not None:
            report.resume.incomplete = self.started_without_state.incomplete
            report.resume.rows_removed.update(self.started_without_state.rows_removed)
            self.started_without_state = None
        report.resume.extracted = list(self.pipeline.list_extracted_load_packages())
        report.resume.normalized = list(self.pipeline.list_normalized_load_packages())
        if report.resume.extracted or report.resume.normalized:
            log.info(
                "resuming %s: %d extracted and %d normalized packages pending",
                self.pipeline.pipeline_name,
                len(report.resume.extracted),
                len(report.resume.normalized),
            )
        if report.resume.extracted:
            self._normalize(report)
        if self.pipeline.list_normalized_load_packages():
            self._load(report)

    def _normalize(self, report: RunReport) -> None:
        extracted = self.pipeline.list_extracted_load_packages()
        if not extracted:
            return
        with platform_values(normalize_step_values(self.pipeline, extracted)):
            info = self._step(report, "normalize", self.pipeline.normalize)
        # a package restored from a snapshot may have been partly loaded by a dead run
        self._trusted.update(set(info.loads_ids) - set(report.resume.extracted))
        for table, count in (info.row_counts or {}).items():
            report.normalized_rows[table] = report.normalized_rows.get(table, 0) + count

    def _load(self, report: RunReport) -> None:
        rows: dict[str, dict[str, int]] = {}

        def load() -> Any:
            # on every attempt: a failed attempt may itself have left a partial package
            prepare_normalized_packages(self.pipeline, report.resume, frozenset(self._trusted))
            self._destination_answered = True
            self._trusted.clear()
            pending = self.pipeline.list_normalized_load_packages()
            for load_id in pending:
                rows[load_id] = package_row_counts(package_dir(self.pipeline, load_id))
            if self.listener is not None:
                self.listener.on_load_starting(_sum_rows(rows.values()))
            return self.pipeline.load() if pending else None

        if not self.pipeline.list_normalized_load_packages():
            return
        if self.session is not None:
            lease = self.session.lease

            def fenced_load() -> Any:
                with fencing.guard(self.pipeline, lease):
                    return load()

            info = self._step(report, "load", fenced_load)
        else:
            info = self._step(report, "load", load)
        if info is not None:
            self._load_infos.append(info)
        pending_at_start = {*report.resume.extracted, *report.resume.normalized}
        for package in info.load_packages if info is not None else []:
            if package.load_id in pending_at_start:
                for table, count in rows.get(package.load_id, {}).items():
                    report.resumed_rows[table] = report.resumed_rows.get(table, 0) + count
            if package.schema_update:
                report.schema_changes += len(package.schema_update)
                for callback in self.callbacks:
                    callback.on_schema_change(self.pipeline, package.schema_update)
            report.loaded_packages.append(package.load_id)
            for table, count in rows.get(package.load_id, {}).items():
                report.loaded_rows[table] = report.loaded_rows.get(table, 0) + count

    def destination_answered(self) -> None:
        """Tells the run that its destination answered with these credentials (a sync of
        dlt's state from it): from now on a load that loses it rides the loss out."""
        self._destination_answered = True

    def _rides_out(self, error: BaseException) -> bool:
        """Retried over the whole window: a transient family's error, or any error a load
        meets once the destination has answered in this run (drivers raise a lost connection
        as the same type as a refused password; only a password that worked tells them
        apart)."""
        loading = self._destination_answered and self._current_step == "load"
        return is_transient(error) or (loading and not is_terminal(error))

    def _fenced(self) -> bool:
        """A run that lost its lease stops here: another attempt (Prefect's) may take it."""
        return self.session is not None and self.session.lease.lost is not None

    def _step(self, report: RunReport, step: str, fn: Callable[[], T]) -> T:
        entry = StepReport(step)
        report.steps.append(entry)
        self._current_step = step
        pending_before = self._extracted_now() if step == "extract" else set()

        def retryable(error: BaseException) -> bool:
            if is_terminal(error) or self._fenced():
                return False
            # an extract that committed its package before it failed must not run again:
            # the package is pending, and a second extract would load its rows twice
            return step != "extract" or self._extracted_now() <= pending_before

        policy = (
            self.retry_policy.copy(
                retry=self.retry_policy.retry & tenacity.retry_if_exception(retryable),
                reraise=True,
            )
            if step in self.retry_steps
            else tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True)
        )
        started = time.perf_counter()
        try:
            for attempt in policy:
                with attempt:
                    entry.attempts += 1
                    if entry.attempts > 1 and self._last_error is not None:
                        for callback in self.callbacks:
                            callback.on_retry(
                                self.pipeline, step, entry.attempts - 1, self._last_error
                            )
                    for callback in self.callbacks:
                        callback.on_before_step(self.pipeline, step)
                    try:
                        result = fn()
                    except Exception as err:
                        entry.errors.append(f"{type(root_cause(err)).__name__}: {root_cause(err)}")
                        log.warning("%s attempt %d failed: %s", step, entry.attempts, err)
                        self._last_error = err
                        if self.listener is not None:
                            self.listener.on_attempt_failed(step, entry.attempts, err)
                        raise
            # The step committed. A snapshot that failed after it (the store's own retries
            # over its window already ran out) ends the run here, never by running the step
            # again: the next run restores the last snapshot and resumes from it.
            if self.checkpoints:
                self.checkpoints.raise_failures()
            for callback in self.callbacks:
                callback.on_after_step(self.pipeline, step, result)
            return result
        finally:
            entry.seconds = time.perf_counter() - started

    def _extracted_now(self) -> set[str]:
        return set(self.pipeline.list_extracted_load_packages())


def _rows(checkpoints: CheckpointReport) -> int:
    return sum(segment.rows for segment in checkpoints.segments)


def _sum_rows(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for table, count in part.items():
            total[table] = total.get(table, 0) + count
    return total


def extracted_rows(info: Any) -> dict[str, int]:
    """Rows per table from an ExtractInfo (0 tables when nothing new was extracted)."""
    rows: dict[str, int] = {}
    for metrics_list in (getattr(info, "metrics", None) or {}).values():
        for metrics in metrics_list:
            for table, table_metrics in metrics.get("table_metrics", {}).items():
                rows[table] = rows.get(table, 0) + table_metrics.items_count
    return rows
