"""The Prometheus collector: on each scrape it has the reader catch up with the API, then
names and types every figure of the tally (docs/observability.md lists them)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from flows.observe.reader import Reader
from flows.observe.tally import DURATION_BUCKETS, Histogram, Labels

P = "flows_"
# (attribute of the tally, metric name, help, label names): the counters read from run records
RECORD_COUNTERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "attempts",
        "attempts",
        "Task attempts by outcome (completed, failed, killed, config-error)",
        ("deployment", "pipeline", "outcome"),
    ),
    (
        "retries",
        "retries",
        "Task attempts after the first of their run",
        ("deployment", "pipeline"),
    ),
    (
        "rows",
        "rows_loaded",
        "Rows loaded per table (dlt's own tables left out)",
        ("pipeline", "table"),
    ),
    ("packages", "load_packages", "Load packages loaded", ("pipeline",)),
    (
        "schema_changes",
        "schema_changes",
        "Tables whose destination schema a load changed",
        ("pipeline",),
    ),
    ("step_retries", "step_retries", "Retries of a step inside an attempt", ("pipeline", "step")),
    (
        "resumes",
        "resumes",
        "Attempts that finished packages an earlier attempt left",
        ("pipeline",),
    ),
    ("resumed_packages", "resumed_packages", "Packages finished by a resume", ("pipeline",)),
    (
        "rows_not_extracted_again",
        "rows_not_extracted_again",
        "Rows a resume loaded from packages left pending: work not done twice",
        ("pipeline",),
    ),
    (
        "fenced",
        "fenced_attempts",
        "Attempts stopped because a newer holder fenced them off",
        ("pipeline",),
    ),
    (
        "lease_takeovers",
        "lease_takeovers",
        "Attempts that took the state's lease over from a holder that left it",
        ("pipeline",),
    ),
    (
        "oom_killed",
        "oom_killed_attempts",
        "Attempts during which the kernel OOM-killed a process of the pod",
        ("deployment", "pipeline"),
    ),
    (
        "cpu_throttled",
        "cpu_throttled_seconds",
        "Time the pod's CPU was throttled in attempts",
        ("deployment", "pipeline"),
    ),
    ("snapshots", "snapshots", "State snapshots written", ("pipeline",)),
    (
        "snapshot_bytes",
        "snapshot_bytes",
        "Bytes sent to the state store by snapshots",
        ("pipeline",),
    ),
    ("snapshot_seconds", "snapshot_seconds", "Time spent writing snapshots", ("pipeline",)),
    (
        "store_errors",
        "state_store_errors",
        "Attempts that failed on a state store error",
        ("pipeline", "error"),
    ),
)


def _counter(
    name: str, doc: str, labels: tuple[str, ...], values: Mapping[Labels, float]
) -> Metric:
    family = CounterMetricFamily(P + name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _gauge(name: str, doc: str, labels: tuple[str, ...], values: Mapping[Labels, float]) -> Metric:
    family = GaugeMetricFamily(P + name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _histogram(
    name: str, doc: str, labels: tuple[str, ...], values: Mapping[Labels, Histogram]
) -> Metric:
    family = HistogramMetricFamily(P + name, doc, labels=list(labels))
    for key, h in sorted(values.items()):
        buckets = [(str(b), float(n)) for b, n in zip(DURATION_BUCKETS, h.buckets, strict=True)]
        family.add_metric(list(key), [*buckets, ("+Inf", float(h.count))], h.total)
    return family


class PlatformCollector(Collector):
    """Registered once in the exporter's registry; Prometheus' scrape drives the reads."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        self.reader.refresh()
        tally, current = self.reader.tally, self.reader.current
        yield from self._runs(current.in_flight, current.expected_interval)
        for attribute, name, doc, labels in RECORD_COUNTERS:
            yield _counter(name, doc, labels, getattr(tally, attribute))
        yield _histogram(
            "step_duration_seconds",
            "Step durations (extract, normalize, load) per attempt",
            ("pipeline", "step"),
            tally.step_duration,
        )
        yield _gauge(
            "attempt_peak_memory_bytes",
            "Peak memory of the newest attempt (the pipeline process)",
            ("deployment", "pipeline"),
            tally.peak_memory,
        )
        yield _gauge(
            "attempt_memory_limit_bytes",
            "Memory limit of the newest attempt's pod",
            ("deployment", "pipeline"),
            tally.memory_limit,
        )
        yield from self._pools()
        yield from self._self(started)

    def _runs(
        self, in_flight: Mapping[Labels, float], intervals: Mapping[str, float]
    ) -> Iterator[Metric]:
        tally = self.reader.tally
        yield _gauge(
            "flow_runs",
            "Flow runs in flight by state (Late, Pending, AwaitingConcurrencySlot, Running, ...)",
            ("deployment", "state"),
            in_flight,
        )
        yield _counter(
            "flow_runs_finished",
            "Flow runs that reached a terminal state (Completed, Failed, Crashed, Cancelled, ...)",
            ("deployment", "state"),
            tally.runs_finished,
        )
        yield _histogram(
            "flow_run_duration_seconds",
            "Run time of finished flow runs",
            ("deployment", "state"),
            tally.run_duration,
        )
        yield _gauge(
            "last_success_timestamp_seconds",
            "End time of the deployment's newest completed run",
            ("deployment",),
            {(d,): t for d, t in tally.last_success.items()},
        )
        yield _gauge(
            "deployment_expected_interval_seconds",
            "Longest gap between the deployment's scheduled runs (its freshness bound)",
            ("deployment",),
            {(d,): s for d, s in intervals.items()},
        )

    def _pools(self) -> Iterator[Metric]:
        pools = self.reader.current.pools
        yield _gauge(
            "work_pool_slots_used",
            "Runs holding a slot of the pool (Pending, Running, Cancelling)",
            ("pool",),
            {(p.name,): p.slots_used for p in pools},
        )
        yield _gauge(
            "work_pool_slots_limit",
            "The pool's concurrency limit (absent: unlimited)",
            ("pool",),
            {(p.name,): p.slots_limit for p in pools if p.slots_limit is not None},
        )
        yield _gauge(
            "work_pool_paused",
            "1 when the pool is paused",
            ("pool",),
            {(p.name,): float(p.paused) for p in pools},
        )
        yield _gauge(
            "work_pool_ready",
            "1 when the pool has a worker polling it",
            ("pool",),
            {(p.name,): float(p.ready) for p in pools},
        )
        yield _gauge(
            "workers",
            "Workers of the pool by status (online, offline)",
            ("pool", "status"),
            {(p.name, s): n for p in pools for s, n in p.workers.items()},
        )
        yield _gauge(
            "worker_last_heartbeat_timestamp_seconds",
            "Newest heartbeat of the pool's workers",
            ("pool",),
            {(p.name,): p.last_heartbeat for p in pools if p.last_heartbeat},
        )

    def _self(self, started: float) -> Iterator[Metric]:
        reader = self.reader
        yield _gauge(
            "exporter_api_up",
            "1 when the last read of the Prefect API succeeded",
            (),
            {(): float(reader.api_up)},
        )
        yield _counter(
            "exporter_read_errors",
            "Reads of the Prefect API that failed",
            (),
            {(): float(reader.read_errors)},
        )
        yield _gauge(
            "exporter_read_seconds",
            "Duration of the last read of the Prefect API",
            (),
            {(): reader.read_seconds},
        )
        yield _gauge(
            "exporter_collect_seconds",
            "Duration of this scrape's collection",
            (),
            {(): time.perf_counter() - started},
        )
