"""What a run did and who hears of it: the report (`RunReport`, `StepReport`), the hooks for
user code (`RunCallbacks`) and for progress (`RunListener`), and the report as plain text
for the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import dlt

from flows.durable.resume import ResumePlan
from flows.state.session import SnapshotStats


class RunListener(Protocol):
    """Told about failed attempts as they happen (the Prefect collector turns them into
    error artifacts); the runner knows nothing of Prefect."""

    def on_attempt_failed(self, step: str, attempt: int, error: BaseException) -> None: ...

    def on_load_starting(self, rows: dict[str, int]) -> None:
        """Rows per table about to be loaded (read from the package files)."""


class RunCallbacks:
    """Hooks for user code, at the points the dlt+ runner offers; override what you need.

    Exceptions raised here fail the run (unlike dlt's collector hooks, which swallow them).
    """

    def on_before_step(self, pipeline: dlt.Pipeline, step: str) -> None:
        """Before each attempt of `step` (extract, normalize, load)."""

    def on_after_step(self, pipeline: dlt.Pipeline, step: str, info: Any) -> None:
        """After `step` succeeded, with dlt's step info."""

    def on_retry(
        self, pipeline: dlt.Pipeline, step: str, attempt: int, error: BaseException
    ) -> None:
        """Attempt `attempt` of `step` failed and another one follows."""

    def on_schema_change(self, pipeline: dlt.Pipeline, schema_update: dict[str, Any]) -> None:
        """A loaded package changed the destination schema (dlt's `schema_update`)."""

    def on_run_end(
        self, pipeline: dlt.Pipeline, report: RunReport, error: BaseException | None
    ) -> None:
        """At the end of the run, failed (`error`) or not."""


@dataclass
class StepReport:
    step: str
    attempts: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class SegmentReport:
    """One committed segment of a checkpointed extract."""

    rows: int
    seconds: float
    cursor: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointReport:
    """A checkpointed extract (flows/durable/segments.py): its interval and segments, and on a
    resume what earlier attempts had committed (not extracted again). `every` None: one
    segment, for `why`."""

    every: float | None = None
    why: str = ""
    segments: list[SegmentReport] = field(default_factory=list)
    resumed_segments: int = 0
    rows_not_extracted: int = 0


@dataclass
class RunReport:
    """What a run did; the CLI prints it and Prefect tasks turn it into artifacts."""

    pipeline: str
    destination: str
    dataset: str
    resume: ResumePlan = field(default_factory=ResumePlan)
    steps: list[StepReport] = field(default_factory=list)
    extracted_rows: dict[str, int] = field(default_factory=dict)
    normalized_rows: dict[str, int] = field(default_factory=dict)
    loaded_packages: list[str] = field(default_factory=list)
    loaded_rows: dict[str, int] = field(default_factory=dict)
    snapshots: SnapshotStats | None = None
    seconds: float = 0.0
    # a retry of a run whose extract an earlier attempt committed: nothing new was extracted
    extract_skipped: bool = False
    checkpoints: CheckpointReport = field(default_factory=CheckpointReport)
    # rows loaded from packages found pending at the start: work a resume did not redo
    resumed_rows: dict[str, int] = field(default_factory=dict)
    schema_changes: int = 0  # tables whose destination schema the loaded packages changed
    lease_takeover: bool = False  # the lease was taken over from a holder that left it


class FinalReportToCollector(RunCallbacks):
    """Hands the run report to the progress collector the user gave dlt, then lets it send
    what it still holds (its artifacts go out from a background thread)."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def on_run_end(
        self, pipeline: dlt.Pipeline, report: RunReport, error: BaseException | None
    ) -> None:
        self.collector.on_run_finished(report, "failed" if error else "completed")
        if callable(close := getattr(self.collector, "close", None)):
            close()


def listener_of(collector: Any) -> RunListener | None:
    if hasattr(collector, "on_attempt_failed") and hasattr(collector, "on_load_starting"):
        return collector
    return None


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def resume_phrase(resume: ResumePlan) -> str | None:
    """What a run finished of a dead run's work, in words (None: nothing was pending)."""
    pending = len(resume.extracted) + len(resume.normalized)
    if not pending:
        return None
    done = []
    if resume.extracted:
        done.append(f"{len(resume.extracted)} extracted (normalized and loaded now)")
    if resume.normalized:
        done.append(f"{len(resume.normalized)} normalized (loaded now)")
    how = [
        (len(resume.already_loaded), "already in the destination, not loaded again"),
        (len(resume.completed), "fully loaded, only their load record written"),
        (len(resume.reset), "partly loaded: reloaded from the start"),
    ]
    details = [f"{n} {what}" for n, what in how if n]
    removed = ", ".join(f"{t} {n:,}" for t, n in sorted(resume.rows_removed.items()))
    if removed:
        details.append(f"rows of a load never completed removed first: {removed}")
    return f"{_count(pending, 'pending package')} finished: {', '.join(done)}" + (
        f"; {'; '.join(details)}" if details else ""
    )


def snapshots_phrase(stats: SnapshotStats) -> str:
    """Snapshots written, and what was restored (nothing, on a first run)."""
    restored = (
        f"generation {stats.restored_generation} restored"
        if stats.restored_generation
        else "nothing to restore (first run)"
    )
    return f"{restored}, {_count(stats.snapshots, 'snapshot')} written"


def format_report(report: RunReport) -> str:
    lines = [f"pipeline {report.pipeline} -> {report.destination} dataset {report.dataset}"]
    if resumed := resume_phrase(report.resume):
        lines.append(f"  resumed: {resumed}")
    for line in (job_resume_summary(report.resume), checkpoint_summary(report.checkpoints)):
        if line:
            lines.append(f"  {line}")
    for step in report.steps:
        retry = f", {step.attempts} attempts" if step.attempts > 1 else ""
        lines.append(f"  {step.step:9} {step.seconds:7.2f} s{retry}")
    tables = {k: v for k, v in report.loaded_rows.items() if not k.startswith("_dlt")}
    if tables:
        lines.append("  rows loaded: " + ", ".join(f"{t} {n:,}" for t, n in sorted(tables.items())))
    else:
        lines.append("  no new rows")
    if report.snapshots:
        s = report.snapshots
        lines.append(
            f"  state: {snapshots_phrase(s)} ({s.bytes_uploaded:,} bytes sent, {s.seconds:.2f} s)"
        )
    lines.append(f"  total {report.seconds:.2f} s")
    return "\n".join(lines)


def checkpoint_summary(checkpoints: CheckpointReport) -> str | None:
    """One line on a checkpointed extract: segments, cursor, and what a resume skipped."""
    parts = []
    if checkpoints.resumed_segments:
        parts.append(
            f"resumed after {checkpoints.resumed_segments} committed segments: "
            f"{checkpoints.rows_not_extracted:,} rows not extracted again"
        )
    if checkpoints.every:
        done = checkpoints.segments
        cursor = done[-1].cursor if done else {}
        reached = ", ".join(f"{k} {v}" for k, v in cursor.items()) or "none"
        parts.append(
            f"checkpoints every {checkpoints.every:g} s: {len(done)} segments committed, "
            f"cursor reached: {reached}"
        )
    elif checkpoints.why:
        parts.append(f"extract in one segment: {checkpoints.why}")
    return "; ".join(parts) or None


def job_resume_summary(resume: ResumePlan) -> str | None:
    """One line on a load resumed job by job, and why any package was reloaded whole."""
    parts = []
    if resume.resumed_jobs:
        parts.append(
            f"load resumed job by job: {_count(resume.jobs_skipped, 'job')} proven committed "
            f"not loaded again, {resume.jobs_reloaded:,} loaded"
        )
    parts += [f"package {i} reloaded whole: {why}" for i, why in resume.reset_reasons.items()]
    return "; ".join(parts) or None


def print_report(report: RunReport) -> None:
    print(format_report(report))
