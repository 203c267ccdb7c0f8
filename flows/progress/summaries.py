"""What the progress collector writes, as text: where a run ran, its nested tables, and its
final report as markdown (flows/progress/collector.py sends them)."""

from __future__ import annotations

import os
import socket
from typing import Any

from flows.config.pod import IMAGE
from flows.durable.report import (
    checkpoint_summary,
    job_resume_summary,
    resume_phrase,
    snapshots_phrase,
)
from flows.progress.artifacts import markdown_pairs, markdown_table, rows_tables


def execution_environment() -> dict[str, str | None]:
    """Where this runs: the Kubernetes downward API env when in a pod, else the host."""
    return {
        "pod": os.environ.get("POD_NAME"),
        "node": os.environ.get("NODE_NAME"),
        "namespace": os.environ.get("POD_NAMESPACE"),
        "image": IMAGE.get(),
        "host": socket.gethostname(),
    }


def nested_tables(pipeline: Any, known: set[str] | None) -> set[str] | None:
    """The pipeline's child tables (those with a parent), added to what was known."""
    try:
        found = {
            table["name"]
            for schema in pipeline.schemas.values()
            for table in schema.data_tables(include_incomplete=True)
            if table.get("parent")
        }
    except Exception:  # no schema yet
        return known
    return found | (known or set())


def mebibytes(value: int | None) -> str:
    return "unlimited" if value is None else f"{value / 2**20:,.0f} MiB"


def run_report_markdown(
    report: Any, outcome: str, attempt: int | None, nested: set[str] | None
) -> tuple[str, list[tuple[str, int]]]:
    """The final report of a run as markdown, and its rows loaded per table (sorted)."""
    rows = sorted((t, n) for t, n in report.loaded_rows.items() if not t.startswith("_dlt"))
    resumed = resume_phrase(report.resume) or "nothing pending"
    steps = [
        (s.step, s.attempts, f"{s.seconds:.2f} s", "; ".join(s.errors) or "-") for s in report.steps
    ]
    body = "\n\n".join(
        [
            markdown_pairs(
                {
                    "pipeline": report.pipeline,
                    "destination": report.destination,
                    "dataset": report.dataset,
                    "outcome": outcome,
                    "task attempt": attempt,
                    "resumed from state store": resumed,
                    "load resumed": job_resume_summary(report.resume),
                    "extract": checkpoint_summary(report.checkpoints),
                    "state store": snapshots_phrase(report.snapshots) if report.snapshots else None,
                    "rows extracted (this attempt)": sum(
                        n for t, n in report.extracted_rows.items() if not t.startswith("_dlt")
                    ),
                    "duration": f"{report.seconds:.2f} s",
                }
            ),
            "### Rows loaded\n" + rows_tables(dict(rows), nested),
            "### Steps\n" + markdown_table(["step", "attempts", "duration", "errors"], steps),
        ]
    )
    return body, rows
