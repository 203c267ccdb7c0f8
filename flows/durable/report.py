"""Plain-text rendering of a run report for the terminal."""

from __future__ import annotations

from flows.durable.runner import RunReport


def format_report(report: RunReport) -> str:
    lines = [f"pipeline {report.pipeline} -> {report.destination} dataset {report.dataset}"]
    resume = report.resume
    if resume.extracted or resume.normalized:
        lines.append(
            f"  resumed: {len(resume.extracted)} extracted, {len(resume.normalized)} normalized "
            f"packages ({len(resume.already_loaded)} already loaded, {len(resume.completed)} "
            f"completed, {len(resume.reset)} reloaded"
            + (f", rows removed first: {resume.rows_removed}" if resume.rows_removed else "")
            + ")"
        )
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
            f"  state: generation {s.restored_generation} restored, {s.snapshots} snapshots "
            f"({s.bytes_uploaded:,} bytes sent, {s.seconds:.2f} s)"
        )
    lines.append(f"  total {report.seconds:.2f} s")
    return "\n".join(lines)


def print_report(report: RunReport) -> None:
    print(format_report(report))
