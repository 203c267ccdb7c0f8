"""Artifacts in the Prefect API, written off the pipeline thread and counted.

Keys carry the pipeline name, so two pipelines in one flow never overwrite each other's.
Outside a Prefect run (no flow run id) every artifact is logged instead.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
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

    @classmethod
    def from_context(cls) -> RunTarget:
        """The current Prefect run, if any (task run inside a flow run, or a flow run)."""
        from prefect.context import FlowRunContext, TaskRunContext

        task_ctx = TaskRunContext.get()
        if task_ctx is not None:
            return cls(task_ctx.task_run.flow_run_id, task_ctx.task_run.id)
        flow_ctx = FlowRunContext.get()
        if flow_ctx is not None and flow_ctx.flow_run is not None:
            return cls(flow_ctx.flow_run.id)
        return cls(None)


class ArtifactSink:
    """Sends artifact writes from a background thread; the caller never waits on the API.

    Writes are applied in order. `flush()` waits until everything queued was sent. API
    failures are logged, never raised: reporting must not break a pipeline.
    """

    def __init__(self, target: RunTarget) -> None:
        self.target = target
        self.calls = 0
        self.failures = 0
        self._queue: queue.Queue[Callable[[Any], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    @property
    def enabled(self) -> bool:
        return self.target.flow_run_id is not None

    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._client is None:
                    from prefect.client.orchestration import get_client

                    self._client = get_client(sync_client=True)
                    self._client.__enter__()
                self.calls += 1
                job(self._client)
            except Exception as err:
                self.failures += 1
                log.warning("could not write a Prefect artifact: %s", err)
            finally:
                self._queue.task_done()

    def _submit(self, job: Callable[[Any], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._worker, name="flows-artifacts", daemon=True
            )
            self._thread.start()
        self._queue.put(job)

    def create(self, key: str, kind: str, data: Any, description: str) -> _Handle:
        """Queues an artifact; the returned handle updates it later (progress artifacts)."""
        handle = _Handle()
        if not self.enabled:
            log.info("[%s] %s\n%s", key, description, data)
            return handle

        def job(client: Any) -> None:
            from prefect.client.schemas.actions import ArtifactCreate

            created = client.create_artifact(
                ArtifactCreate(
                    key=key,
                    type=kind,
                    data=data,
                    description=description,
                    flow_run_id=self.target.flow_run_id,
                    task_run_id=self.target.task_run_id,
                )
            )
            handle.id = created.id

        self._submit(job)
        return handle

    def update(self, handle: _Handle, data: Any, description: str) -> None:
        if not self.enabled:
            return

        def job(client: Any) -> None:
            from prefect.client.schemas.actions import ArtifactUpdate

            if handle.id is not None:
                client.update_artifact(
                    handle.id, ArtifactUpdate(data=data, description=description)
                )

        self._submit(job)

    def latest_description(self, key: str) -> str | None:
        """Description of this flow run's newest artifact with `key` (waits for the API)."""
        if not self.enabled:
            return None
        result: list[str | None] = []
        client_flow_run = self.target.flow_run_id
        assert client_flow_run is not None

        def job(client: Any) -> None:
            from prefect.client.schemas.filters import (
                ArtifactFilter,
                ArtifactFilterFlowRunId,
                ArtifactFilterKey,
            )
            from prefect.client.schemas.sorting import ArtifactSort

            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[client_flow_run]),
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
            result.append(found[0].description if found else None)

        self._submit(job)
        self.flush()
        return result[0] if result else None

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None


class _Handle:
    id: UUID | None = None
