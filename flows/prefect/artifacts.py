"""Artifacts in the Prefect API, written off the pipeline thread and counted.

Outside a Prefect run (no flow run id) every artifact is logged instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from flows.progress.artifacts import ArtifactHandle, RunTarget

log = logging.getLogger(__name__)


def target_from_context() -> RunTarget:
    """The current Prefect run, if any (task run inside a flow run, or a flow run)."""
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        return RunTarget(task_ctx.task_run.flow_run_id, task_ctx.task_run.id)
    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        return RunTarget(flow_ctx.flow_run.id)
    return RunTarget(None)


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

    def create(
        self, key: str, kind: str, data: Any, description: str, flow_level: bool = False
    ) -> ArtifactHandle:
        """Queues an artifact; the returned handle updates it later (progress artifacts).
        A `flow_level` one attaches to the flow run only (the UI shows it apart, on top)."""
        handle = ArtifactHandle()
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
                    task_run_id=None if flow_level else self.target.task_run_id,
                )
            )
            handle.id = created.id

        self._submit(job)
        return handle

    def update(self, handle: ArtifactHandle, data: Any, description: str) -> None:
        if not self.enabled:
            return

        def job(client: Any) -> None:
            from prefect.client.schemas.actions import ArtifactUpdate

            if handle.id is not None:
                client.update_artifact(
                    handle.id, ArtifactUpdate(data=data, description=description)
                )

        self._submit(job)

    def create_once(self, key: str, kind: str, data: Any, description: str, marker: str) -> None:
        """Creates the artifact unless this flow run's newest `key` already names `marker`
        (an earlier attempt reported it). The check runs on the sender thread too."""
        if not self.enabled:
            log.info("[%s] %s\n%s", key, description, data)
            return
        flow_run_id = self.target.flow_run_id
        assert flow_run_id is not None

        def job(client: Any) -> None:
            from prefect.client.schemas.actions import ArtifactCreate
            from prefect.client.schemas.filters import (
                ArtifactFilter,
                ArtifactFilterFlowRunId,
                ArtifactFilterKey,
            )
            from prefect.client.schemas.sorting import ArtifactSort

            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
            if found and marker in (found[0].description or ""):
                return
            client.create_artifact(
                ArtifactCreate(
                    key=key,
                    type=kind,
                    data=data,
                    description=description,
                    flow_run_id=flow_run_id,
                    task_run_id=self.target.task_run_id,
                )
            )

        self._submit(job)

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
