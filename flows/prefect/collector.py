"""`PrefectCollector`: dlt progress as Prefect artifacts of the current run.

    pipeline = dlt.pipeline(..., progress=PrefectCollector())

The collector itself (flows.progress.collector) knows nothing of Prefect; this one sends what
it writes to the Prefect API, off the pipeline thread. Under `runner(...)` it also writes the
run's record (CPU, peak memory, rows, step times: what `flows tune` reads) to the current
flow run, as the platform's own tasks do.
"""

from __future__ import annotations

from typing import Any

from flows.prefect.artifacts import ArtifactSink, target_from_context
from flows.prefect.records import runner_record, write_record
from flows.progress.artifacts import RunTarget, Sink
from flows.progress.collector import ProgressCollector
from flows.system.resources import current_usage


class PrefectCollector(ProgressCollector):
    def __init__(
        self,
        target: RunTarget | None = None,
        interval: float = 1.0,
        pipeline_name: str = "",
        sink: Sink | None = None,
    ) -> None:
        """Artifacts go to `target` (default: the current flow or task run), or to `sink`."""
        super().__init__(
            sink or ArtifactSink(target or target_from_context()), interval, pipeline_name
        )
        self._usage_before = current_usage()

    def on_run_finished(self, report: Any, outcome: str, attempt: int | None = None) -> None:
        super().on_run_finished(report, outcome, attempt)
        from prefect.runtime import flow_run, task_run

        if flow_run.id:
            record = runner_record(report, outcome, self._usage_before)
            write_record(record, flow_run.id, task_run.id or None)
