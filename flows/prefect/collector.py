"""`PrefectCollector`: dlt progress as Prefect artifacts of the current run.

    pipeline = dlt.pipeline(..., progress=PrefectCollector())

The collector itself (flows.progress.collector) knows nothing of Prefect; this one sends what
it writes to the Prefect API, off the pipeline thread.
"""

from __future__ import annotations

from flows.prefect.artifacts import ArtifactSink, target_from_context
from flows.progress.artifacts import RunTarget, Sink
from flows.progress.collector import ProgressCollector


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
