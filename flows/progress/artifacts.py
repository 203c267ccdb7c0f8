"""What a run's artifacts are made of, whoever sends them: keys, markdown, the sink protocol.

Keys carry the pipeline name, so two pipelines in one flow never overwrite each other's.
Nothing here talks to Prefect: flows.prefect.artifacts sends artifacts to its API, and an
isolated attempt sends them to its parent (flows.attempt.protocol).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

log = logging.getLogger(__name__)


def artifact_key(pipeline: str, *parts: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    raw = "-".join([pipeline, *parts]).lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")


def cell(value: Any) -> str:
    """Counts with thousands separators; everything else as it prints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_pairs(pairs: Mapping[str, Any]) -> str:
    rows = [(f"**{k}**", v) for k, v in pairs.items() if v is not None]
    return markdown_table(["item", "value"], rows)


def split_rows(
    rows: Mapping[str, int], nested: Iterable[str] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Root tables and nested (child) tables apart: a nested row is part of a root row, so
    adding them up counts one event several times. `nested` names the schema's child
    tables; without a schema, dlt's `parent__child` naming decides."""
    children = set(nested) if nested is not None else {t for t in rows if "__" in t}
    root = {t: n for t, n in rows.items() if t not in children}
    return root, {t: n for t, n in rows.items() if t in children}


def rows_phrase(rows: Mapping[str, int], nested: Iterable[str] | None = None) -> str:
    """`30,000 rows (+60,000 in nested tables)`."""
    root, children = split_rows(rows, nested)
    text = f"{sum(root.values()):,} rows"
    return text + (f" (+{sum(children.values()):,} in nested tables)" if children else "")


def rows_tables(rows: Mapping[str, int], nested: Iterable[str] | None = None) -> str:
    root, children = split_rows(rows, nested)
    text = "#### Root tables\n" + markdown_table(
        ["table", "rows"], sorted(root.items()) or [("-", 0)]
    )
    if children:
        text += "\n\n#### Nested tables\n" + markdown_table(
            ["table", "rows"], sorted(children.items())
        )
    return text


def step_label(step: str) -> str:
    """dlt's `Normalize synthetic in 1796160694.13` with the load id as a UTC time."""
    match = re.search(r" in (\d{9,11}\.\d+)$", step)
    if not match:
        return step
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(float(match.group(1)), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{step[: match.start()]} (package extracted {when})"


@dataclass(frozen=True)
class RunTarget:
    """Where artifacts attach: a flow run and optionally one task run."""

    flow_run_id: UUID | None
    task_run_id: UUID | None = None


class Sink(Protocol):
    """Where a collector's artifacts go: the Prefect API (ArtifactSink), or the parent
    process of an isolated attempt (flows.attempt.protocol.MessageSink)."""

    calls: int
    failures: int

    def create(
        self, key: str, kind: str, data: Any, description: str, flow_level: bool = False
    ) -> ArtifactHandle:
        """`flow_level`: attach to the flow run only, not the task run (Prefect's UI shows a
        run's flow-level artifacts apart, above its task runs' ones: the run's report)."""
        ...

    def update(self, handle: ArtifactHandle, data: Any, description: str) -> None: ...

    def create_once(
        self, key: str, kind: str, data: Any, description: str, marker: str
    ) -> None: ...

    def flush(self, timeout: float = 30.0) -> None: ...

    def close(self) -> None: ...


class ArtifactHandle:
    """An artifact to update later: its API id, or its number in an attempt's messages."""

    id: UUID | None = None
    number: int = 0
