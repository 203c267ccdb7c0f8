"""Sends a dlt run's OpenLineage events (what and when: flows/progress/lineage.py) with
openlineage-python's client and facet classes, as callbacks of the durable runner."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from flows.durable.report import RunCallbacks, RunReport
from flows.errors import is_terminal, one_line
from flows.progress.lineage import NAMESPACE, LineageRun

log = logging.getLogger(__name__)

INTEGRATION = "DLT"


class LineageCallbacks(RunCallbacks):
    """Sends the run's events; a failure to send is logged, never fails the run."""

    def __init__(self, run: LineageRun, client: Any = None) -> None:
        from openlineage.client import OpenLineageClient

        self.run = run
        self.client = client or OpenLineageClient()
        self.namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or NAMESPACE
        self._started = False

    def on_before_step(self, pipeline: Any, step: str) -> None:
        self._start(pipeline)

    def on_run_end(self, pipeline: Any, report: RunReport, error: BaseException | None) -> None:
        from openlineage.client.event_v2 import RunState
        from openlineage.client.facet_v2 import error_message_run

        self._start(pipeline)
        if error is None:
            self._emit(pipeline, RunState.COMPLETE, report=report)
            return
        ends = is_terminal(error) or self.run.last_try
        facet = error_message_run.ErrorMessageRunFacet(
            message=one_line(error), programmingLanguage="PYTHON"
        )
        state = RunState.FAIL if ends else RunState.OTHER
        self._emit(pipeline, state, run_facets={"errorMessage": facet})

    def _start(self, pipeline: Any) -> None:
        from openlineage.client.event_v2 import RunState

        if not self._started:
            self._started = True
            self._emit(pipeline, RunState.START if self.run.first_attempt else RunState.RUNNING)

    def _emit(
        self,
        pipeline: Any,
        state: Any,
        report: RunReport | None = None,
        run_facets: dict[str, Any] | None = None,
    ) -> None:
        from openlineage.client.event_v2 import Job, Run, RunEvent
        from openlineage.client.facet_v2 import job_type_job

        try:
            job_type = job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration=INTEGRATION, jobType="PIPELINE"
            )
            event = RunEvent(
                eventType=state,
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=self.run.run_id, facets={**self._parent(), **(run_facets or {})}),
                job=Job(
                    namespace=self.namespace,
                    name=pipeline.pipeline_name,
                    facets={"jobType": job_type},
                ),
                inputs=_inputs(pipeline),
                outputs=_outputs(pipeline, report) if report is not None else [],
            )
            self.client.emit(event)
        except Exception as err:  # lineage must never fail a run
            log.warning("OpenLineage event %s not sent: %s", state, err)

    def _parent(self) -> dict[str, Any]:
        from openlineage.client.facet_v2 import parent_run

        run = self.run
        if not run.flow_run_id:
            return {}
        root = None
        if run.root_run_id:
            root = parent_run.Root(
                run=parent_run.RootRun(runId=run.root_run_id),
                job=parent_run.RootJob(namespace=self.namespace, name=run.root_flow_name or ""),
            )
        facet = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run.flow_run_id),
            job=parent_run.Job(namespace=self.namespace, name=run.flow_name or ""),
            root=root,
        )
        return {"parent": facet}


def _data_tables(pipeline: Any) -> list[dict[str, Any]]:
    try:
        tables: list[dict[str, Any]] = pipeline.default_schema.data_tables()
    except Exception:  # no schema yet (a run that failed before extract)
        return []
    return tables


def _inputs(pipeline: Any) -> list[Any]:
    """The source's resources, as datasets of the source (namespace `dlt://<source>`)."""
    from openlineage.client.event_v2 import InputDataset

    tables = _data_tables(pipeline)
    resources = sorted({t["resource"] for t in tables if t.get("resource")})
    source = f"dlt://{pipeline.default_schema_name}" if tables else ""
    return [InputDataset(namespace=source, name=r) for r in resources]


def _outputs(pipeline: Any, report: RunReport) -> list[Any]:
    """The destination tables the run loaded rows into, with their schema and row counts."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats
    from openlineage.client.facet_v2 import schema_dataset

    destination = pipeline.destination
    namespace = (
        f"{destination.destination_type.rsplit('.', 1)[-1]}://{destination.destination_name}"
    )
    schema = pipeline.default_schema
    outputs = []
    for table, rows in sorted(report.loaded_rows.items()):
        if table.startswith("_dlt"):
            continue
        columns = schema.get_table_columns(table) if table in schema.tables else {}
        fields = [
            schema_dataset.SchemaDatasetFacetFields(name=name, type=column.get("data_type"))
            for name, column in columns.items()
        ]
        outputs.append(
            OutputDataset(
                namespace=namespace,
                name=f"{pipeline.dataset_name}.{table}",
                facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
                outputFacets={
                    "outputStatistics": stats.OutputStatisticsOutputDatasetFacet(rowCount=rows)
                },
            )
        )
    return outputs
