"""The collector behind PrefectCollector (flows/prefect/collector.py): dlt progress and reports
as artifacts, as they happen, written through a sink (the Prefect API, or an isolated
attempt's pipe to its parent).

Pass it as `progress=` (the platform's runner wraps it in its checkpoint collector):
- a progress artifact per step, updated at most once per `interval` seconds from a
  background thread, with a description that says what is done (`events 40,000 rows`);
- a summary table after each step: rows per table, files or jobs, duration, pipeline,
  destination, dataset, where it ran (pod, node, namespace, image) and resources
  (CPU seconds, peak RSS, the container's CPU and memory limits, CPU throttling);
- a schema-change table when a load adds or changes tables or columns (before and after),
  once per load package even across retries;
- through the runner's listener hooks: an error artifact per failed attempt and a final
  report after the run.

API calls grow with steps and time, not rows. Failures are logged, never raised into dlt.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dlt.common.runtime.collector import Collector

from flows.progress.artifacts import (
    ArtifactHandle,
    Sink,
    artifact_key,
    markdown_pairs,
    markdown_table,
    rows_phrase,
    rows_tables,
    step_label,
)
from flows.progress.records import RunRecord, requests_from_env
from flows.progress.summaries import (
    execution_environment,
    mebibytes,
    nested_tables,
    run_report_markdown,
)
from flows.system.resources import container_limits, current_usage

log = logging.getLogger(__name__)

# dlt's counters that count something other than rows (the rest are tables: rows)
STEP_COUNTERS = ("Resources", "Files", "Jobs")
# A progress line in the log at most this often (a terminal under `@dlt_task` shows them)
LOG_EVERY = 10.0

__all__ = ["ProgressCollector", "execution_environment", "nested_tables"]


@dataclass
class _Step:
    name: str
    label: str
    started: float
    cpu_at_start: float
    throttled_at_start: float
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    totals: dict[str, int] = field(default_factory=dict)
    # dlt's second "Extract" (of the pipeline state) continues the step: its own resource
    # is not one of the user's, its rows (the state's table) are not shown anyway
    continued: bool = False
    handle: ArtifactHandle | None = None
    dirty: bool = True


class ProgressCollector(Collector):
    def __init__(self, sink: Sink, interval: float = 1.0, pipeline_name: str = "") -> None:
        """`sink` is where the artifacts go: the Prefect API (flows.prefect.collector), or
        the parent process of an isolated attempt (flows.attempt.protocol)."""
        self.sink = sink
        self.interval = interval
        # known before dlt says it (on_start_trace): errors before the pipeline exists need it
        self.pipeline_name = pipeline_name or "pipeline"
        self.destination = ""
        self.dataset = ""
        self.step = ""
        self._current: _Step | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # the ticker's updates against the step's last
        self._stop_event = threading.Event()
        self._ticker: threading.Thread | None = None
        self._schema_before: dict[str, dict[str, str | None]] = {}
        self._extracted: dict[str, int] = {}
        self._reported: list[BaseException] = []
        self._load_rows: dict[str, int] = {}
        self._schema_captured = False
        self._handles: dict[str, ArtifactHandle] = {}
        self._nested: set[str] | None = None  # child tables, once a schema is known

    # dlt collector API -----------------------------------------------------------------------

    def update(
        self,
        name: str,
        inc: int = 1,
        total: int | None = None,
        inc_total: int | None = None,
        message: str | None = None,
        label: str | None = None,
    ) -> None:
        step = self._current
        if step is None:
            return
        with self._lock:
            if step.continued and name in STEP_COUNTERS:
                return
            key = f"{name} ({label})" if label else name
            step.counters[key] += inc
            if total is not None:
                step.totals[key] = total
            if inc_total:
                step.totals[key] = step.totals.get(key, 0) + inc_total
            step.dirty = True

    def _start(self, step: str) -> None:
        self.step = step
        kind = step.split(" ", 1)[0].lower()
        step = step_label(step)
        usage, limits = current_usage(), container_limits()
        previous = self._current
        if previous is not None and previous.name == kind and kind in self._handles:
            # dlt extracts the pipeline state as a second "Extract": same step, same
            # artifact, and the rows counted so far stay in its description
            previous.continued = True
            self._current = previous
            self._start_ticker()
            return
        current = _Step(
            kind, step, time.perf_counter(), usage.cpu_seconds, limits.cpu_throttled_seconds
        )
        current.handle = self._handles.get(kind) or self.sink.create(
            artifact_key(self.pipeline_name, kind, "progress"),
            "progress",
            0.0,
            f"{self.pipeline_name}: {step} started",
        )
        self._handles[kind] = current.handle
        self._current = current
        self._start_ticker()

    def _stop(self) -> None:
        self._stop_ticker()  # first: a tick under way would send its figure after "done"
        step = self._current
        if step is not None and step.handle is not None:
            done = f"{self.pipeline_name}: {step.label} done: " + self._describe(step)
            self.sink.update(step.handle, 100.0, done)
            if not step.continued or step.name != "extract":
                log.info("%s", done)

    def on_start_trace(self, trace: Any, step: Any, pipeline: Any) -> None:
        self.pipeline_name = pipeline.pipeline_name
        self.dataset = pipeline.dataset_name
        destination = getattr(pipeline, "destination", None)
        self.destination = destination.destination_name if destination else ""
        if self._schema_captured:
            return  # each step starts a trace: keep the schema of the run's start
        self._schema_captured = True
        try:
            self._schema_before = {
                table["name"]: {c: col.get("data_type") for c, col in table["columns"].items()}
                for schema in pipeline.schemas.values()
                for table in schema.data_tables(include_incomplete=True)
            }
        except Exception as err:  # a fresh pipeline has no schema yet
            log.debug("no schema before the run: %s", err)

    def on_start_trace_step(self, trace: Any, step: Any, pipeline: Any) -> None:
        self._handles.clear()

    def on_load_starting(self, rows: dict[str, int]) -> None:
        self._load_rows = {t: n for t, n in rows.items() if not t.startswith("_dlt")}

    def on_end_trace_step(
        self, trace: Any, step: Any, pipeline: Any, step_info: Any, send_state: bool
    ) -> None:
        try:
            self._nested = nested_tables(pipeline, self._nested)
            self._summarize(step, step_info)
            if step.step == "load" and step_info is not None:
                self._schema_changes(step_info, pipeline)
        except Exception as err:
            log.warning("could not report %s step: %s", getattr(step, "step", "?"), err)

    def on_end_trace(self, trace: Any, pipeline: Any, send_state: bool) -> None:
        self.sink.flush()

    # runner listener API ---------------------------------------------------------------------

    def on_attempt_failed(self, step: str, attempt: int, error: BaseException) -> None:
        """One error artifact per failed attempt; an error re-raised upward is not repeated."""
        if any(e is error for e in self._reported):
            return
        self._reported.append(error)
        tb = "".join(traceback.format_exception(error))[-6000:]
        body = (
            markdown_pairs(
                {
                    "pipeline": self.pipeline_name,
                    "step": step,
                    "attempt": attempt,
                    "exception": f"`{type(error).__name__}`",
                }
            )
            + f"\n\n```\n{tb}\n```"
        )
        self.sink.create(
            artifact_key(self.pipeline_name, "errors"),
            "markdown",
            body,
            f"{self.pipeline_name}: {step} attempt {attempt} failed: {error}"[:500],
        )

    def on_run_finished(self, report: Any, outcome: str, attempt: int | None = None) -> None:
        body, rows = run_report_markdown(report, outcome, attempt, self._nested)
        self.sink.create(
            artifact_key(report.pipeline, "report"),
            "markdown",
            body,
            f"{report.pipeline}: {outcome}, {rows_phrase(dict(rows), self._nested)}",
            flow_level=True,  # the run's report, on top of its task runs' artifacts
        )

    def close(self) -> None:
        self._stop_ticker()
        self.sink.close()

    # internals --------------------------------------------------------------------------------

    def _describe(self, step: _Step) -> str:
        """`items 40,000 rows, orders 1,200 rows, resources 1/2`: the tables' rows first,
        dlt's step counters after, its own tables (`_dlt_pipeline_state`) not at all."""
        with self._lock:
            tables, counters = [], []
            for name, value in step.counters.items():
                if name.startswith("_dlt"):
                    continue
                total = step.totals.get(name)
                figure = f"{value:,}" + (f"/{total:,}" if total else "")
                if name.startswith(STEP_COUNTERS):
                    counters.append(f"{name.lower()} {figure}")
                else:
                    tables.append(f"{name} {figure} rows")
        return ", ".join(tables + counters) or "started"

    def _progress(self, step: _Step) -> float:
        with self._lock:
            if step.name == "load" and step.totals.get("Jobs"):
                return 100.0 * step.counters.get("Jobs", 0) / step.totals["Jobs"]
            if step.name == "extract" and step.totals.get("Resources"):
                return 100.0 * step.counters.get("Resources", 0) / step.totals["Resources"]
            if step.name == "normalize" and self._extracted:
                done = sum(v for k, v in step.counters.items() if k in self._extracted)
                return min(99.0, 100.0 * done / max(1, sum(self._extracted.values())))
        return 0.0

    def _start_ticker(self) -> None:
        if self._ticker is not None and self._ticker.is_alive():
            return
        self._stop_event = threading.Event()  # its own: one outliving its join stays stopped
        self._ticker = threading.Thread(
            target=self._tick, args=(self._stop_event,), name="flows-progress", daemon=True
        )
        self._ticker.start()

    def _stop_ticker(self) -> None:
        """Once this returns, the ticker sends nothing more: it sends under `_send_lock`
        and looks at its event there, so a tick under way ends before the set."""
        with self._send_lock:
            self._stop_event.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None

    def _tick(self, stop: threading.Event) -> None:
        logged = time.monotonic()
        while not stop.wait(self.interval):
            with self._send_lock:
                step = self._current
                if stop.is_set() or step is None or step.handle is None or not step.dirty:
                    continue
                step.dirty = False
                line = f"{self.pipeline_name}: {step.label}: {self._describe(step)}"
                self.sink.update(step.handle, round(self._progress(step), 1), line)
                if time.monotonic() - logged >= LOG_EVERY:
                    logged = time.monotonic()
                    log.info("%s", line)

    def _summarize(self, trace_step: Any, step_info: Any) -> None:
        kind = trace_step.step
        if kind not in ("extract", "normalize", "load"):
            return
        step = self._current if self._current and self._current.name == kind else None
        usage, limits = current_usage(), container_limits()
        rows = self._load_rows if kind == "load" else self._rows(kind, step_info)
        if kind == "extract":
            self._extracted = dict(rows)
        started, finished = trace_step.started_at, trace_step.finished_at
        duration = (finished - started).total_seconds() if started and finished else 0.0
        counters = self._describe(step) if step else ""
        facts = {
            "pipeline": self.pipeline_name,
            "destination": self.destination,
            "dataset": self.dataset,
            "step": kind,
            "outcome": "failed" if trace_step.step_exception else "ok",
            "duration": f"{duration:.2f} s",
            "counters": counters or None,
            **{k: v for k, v in execution_environment().items() if v},
            "CPU time (step)": f"{usage.cpu_seconds - (step.cpu_at_start if step else 0):.2f} s",
            "peak RSS (process)": mebibytes(usage.peak_rss_bytes),
            "CPU limit": f"{limits.cpu_limit:g} cores" if limits.cpu_limit else "unlimited",
            "memory limit": mebibytes(limits.memory_limit),
            "CPU throttled (step)": (
                f"{limits.cpu_throttled_seconds - (step.throttled_at_start if step else 0):.2f} s"
            ),
        }
        cpu_request, memory_request = requests_from_env()
        warnings = RunRecord(
            deployment="",
            pipeline=self.pipeline_name,
            flow_run_id="",
            attempt=0,
            outcome="",
            wall_seconds=duration,
            cpu_seconds=usage.cpu_seconds - (step.cpu_at_start if step else 0),
            peak_rss_bytes=usage.peak_rss_bytes,
            memory_limit=limits.memory_limit,
            cpu_request=cpu_request,
            memory_request=memory_request,
            cpu_throttled_seconds=limits.cpu_throttled_seconds
            - (step.throttled_at_start if step else 0),
        ).warnings()
        if warnings:
            facts["warnings"] = "; ".join(warnings)
            log.warning("%s %s: %s", self.pipeline_name, kind, "; ".join(warnings))
        self.sink.create(
            artifact_key(self.pipeline_name, kind, "summary"),
            "markdown",
            f"### {self.pipeline_name}: {kind}\n\n{markdown_pairs(facts)}\n\n"
            + rows_tables(rows, self._nested),
            f"{self.pipeline_name} {kind}: {rows_phrase(rows, self._nested)} in {duration:.1f} s",
        )

    @staticmethod
    def _rows(kind: str, info: Any) -> dict[str, int]:
        if info is None:
            return {}
        if kind == "normalize":
            return {k: v for k, v in (info.row_counts or {}).items() if not k.startswith("_dlt")}
        if kind == "extract":
            from flows.durable.runner import extracted_rows

            return {k: v for k, v in extracted_rows(info).items() if not k.startswith("_dlt")}
        return {}

    def _schema_changes(self, info: Any, pipeline: Any) -> None:
        """Tables and columns the load added to the destination (dlt's applied schema update).

        "before" is the pipeline's schema when this run started; a table whose every column
        is in the update is new at the destination even if a dead run had seen it locally.
        """
        key = artifact_key(self.pipeline_name, "schema-changes")
        current = {t["name"]: t for t in pipeline.default_schema.data_tables(True)}
        for package in info.load_packages:
            rows = []
            for table_name, table in (package.schema_update or {}).items():
                if table_name.startswith("_dlt"):
                    continue
                columns = table.get("columns", {})
                known = set(current.get(table_name, {}).get("columns", {}))
                before = self._schema_before.get(table_name)
                new_table = before is None or known <= set(columns)
                for column, spec in columns.items():
                    if column.startswith("_dlt"):
                        continue
                    old = None if new_table or before is None else before.get(column)
                    new = spec.get("data_type")
                    change = (
                        "new table"
                        if new_table
                        else "type changed"
                        if old is not None and old != new
                        else "new column"
                    )
                    rows.append((table_name, column, change, old or "-", new or "-"))
            if not rows:
                continue
            marker = f"load {package.load_id}"
            self.sink.create_once(  # an earlier attempt may have reported this package
                key,
                "markdown",
                markdown_table(["table", "column", "change", "before", "after"], rows),
                f"{self.pipeline_name}: {len(rows)} schema changes in {marker}",
                marker,
            )
