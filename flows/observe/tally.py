"""Counters and gauges accumulated from what the exporter has read: finished flow runs and
run records. Plain data (no Prefect, no prometheus_client): each figure is a dict keyed by
its label values, so the collector only has to name and type them.

Labels are bounded: deployment, pipeline, table, step, state, outcome, and an error's class
name (a fixed set of the platform's state-store errors); never a flow-run id.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from flows.errors import COMPLETED
from flows.progress.records import RunRecord
from flows.state import errors as state_errors

# the upper bounds of the duration histograms (seconds): a minute to six hours
DURATION_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)

Labels = tuple[str, ...]
# terminal states whose counters exist from the start for every deployment
FINISHED_STATES = ("Completed", "Failed", "Crashed", "Cancelled")


# an attempt that found its lease lost (fenced off by a newer holder) stops on one of these
# (FenceLostError, flows/durable/fencing.py, is a LeaseLostError)
FENCED_ERRORS = frozenset({"LeaseLostError", "FenceLostError"})


def _store_errors() -> frozenset[str]:
    """The class names of the state store's errors: flows/state/errors.py's and fencing's."""
    found, todo = set(FENCED_ERRORS), [state_errors.StateStoreError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(c for c in cls.__subclasses__() if c.__module__ == state_errors.__name__)
    return frozenset(found)


STORE_ERRORS = _store_errors()


@dataclass
class Histogram:
    """Cumulative bucket counts, sum and count of one label set."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
        self.total += value
        self.count += 1


def _counter() -> defaultdict[Labels, float]:
    return defaultdict(float)


@dataclass
class Tally:
    """Everything counted so far; `add_run` and `add_record` are each called once per run or
    record (the reader keeps the cursors that make it so)."""

    runs_finished: defaultdict[Labels, float] = field(default_factory=_counter)
    run_duration: defaultdict[Labels, Histogram] = field(
        default_factory=lambda: defaultdict(Histogram)
    )
    last_success: dict[str, float] = field(default_factory=dict)  # deployment -> unix time
    attempts: defaultdict[Labels, float] = field(default_factory=_counter)
    retries: defaultdict[Labels, float] = field(default_factory=_counter)
    rows: defaultdict[Labels, float] = field(default_factory=_counter)
    packages: defaultdict[Labels, float] = field(default_factory=_counter)
    schema_changes: defaultdict[Labels, float] = field(default_factory=_counter)
    step_duration: defaultdict[Labels, Histogram] = field(
        default_factory=lambda: defaultdict(Histogram)
    )
    step_retries: defaultdict[Labels, float] = field(default_factory=_counter)
    resumes: defaultdict[Labels, float] = field(default_factory=_counter)
    resumed_packages: defaultdict[Labels, float] = field(default_factory=_counter)
    rows_not_extracted_again: defaultdict[Labels, float] = field(default_factory=_counter)
    fenced: defaultdict[Labels, float] = field(default_factory=_counter)
    lease_takeovers: defaultdict[Labels, float] = field(default_factory=_counter)
    oom_killed: defaultdict[Labels, float] = field(default_factory=_counter)
    cpu_throttled: defaultdict[Labels, float] = field(default_factory=_counter)
    snapshots: defaultdict[Labels, float] = field(default_factory=_counter)
    snapshot_bytes: defaultdict[Labels, float] = field(default_factory=_counter)
    snapshot_seconds: defaultdict[Labels, float] = field(default_factory=_counter)
    store_errors: defaultdict[Labels, float] = field(default_factory=_counter)
    peak_memory: dict[Labels, float] = field(default_factory=dict)  # of the newest attempt
    memory_limit: dict[Labels, float] = field(default_factory=dict)

    def add_deployment(self, deployment: str) -> None:
        """Its finished-run counters start at 0, so the first failure is an increase."""
        for state in FINISHED_STATES:
            self.runs_finished.setdefault((deployment, state), 0.0)

    def add_run(self, deployment: str, state: str, seconds: float, ended: float) -> None:
        """A flow run that reached a terminal state (`state` is its name: Completed, Failed,
        Crashed, Cancelled, ...) after `seconds` of run time, at unix time `ended`."""
        self.runs_finished[(deployment, state)] += 1
        self.run_duration[(deployment, state)].observe(seconds)
        if state == "Completed":
            self.last_success[deployment] = max(self.last_success.get(deployment, 0.0), ended)

    def add_record(self, record: RunRecord) -> None:
        """One task attempt's run record (flows/progress/records.py)."""
        who = (record.deployment, record.pipeline)
        pipeline = (record.pipeline,)
        self.attempts[(*who, record.outcome)] += 1
        if record.attempt > 1:
            self.retries[who] += 1
        if record.outcome == COMPLETED:
            for table, n in record.tables.items():
                self.rows[(record.pipeline, table)] += n
        self.packages[pipeline] += record.packages
        self.schema_changes[pipeline] += record.schema_changes
        for step, seconds in record.step_seconds.items():
            self.step_duration[(record.pipeline, step)].observe(seconds)
        for step, tries in record.step_attempts.items():
            self.step_retries[(record.pipeline, step)] += max(0, tries - 1)
        if record.resumed_packages:
            self.resumes[pipeline] += 1
            self.resumed_packages[pipeline] += record.resumed_packages
            self.rows_not_extracted_again[pipeline] += record.resumed_rows
        if record.error in FENCED_ERRORS:
            self.fenced[pipeline] += 1
        if record.error in STORE_ERRORS:
            self.store_errors[(record.pipeline, record.error)] += 1
        self.lease_takeovers[pipeline] += int(record.lease_takeover)
        self.oom_killed[who] += int(record.oom_killed)
        self.cpu_throttled[who] += record.cpu_throttled_seconds
        self.snapshots[pipeline] += record.snapshots
        self.snapshot_bytes[pipeline] += record.snapshot_bytes
        self.snapshot_seconds[pipeline] += record.snapshot_seconds
        self.peak_memory[who] = record.peak_rss_bytes
        if record.memory_limit:
            self.memory_limit[who] = record.memory_limit
