"""Reads the Prefect API incrementally: flow runs that ended since the last read and run
records created since the last read go into the tally once each; what is current (runs in
flight, pools, workers, deployments' schedules) is read whole, since it stays small.

A scrape with thousands of finished runs on the server costs a few requests: ended runs are
read by `end_time` after the cursor and records newest first until a known one. At start the
reader goes back `lookback` (counters then restart, which Prometheus' `rate` and `increase`
handle); the last success of each deployment is read back whatever its age.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterEndTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

from flows.observe.schedules import expected_interval
from flows.observe.tally import Tally
from flows.progress.records import RunRecord, record_key

log = logging.getLogger(__name__)

PAGE = 200  # the Prefect API's largest page
# The server stamps a run's end and a record's creation itself, but transactions commit a
# little out of order: each read looks this far behind its cursor (runs already counted are
# left out by id, records skipped).
OVERLAP = timedelta(seconds=15)
TERMINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
# states of runs in flight, exported as gauges (a Scheduled run that is not Late is not)
IN_FLIGHT = [
    "Late",
    "Pending",
    "AwaitingConcurrencySlot",
    "Running",
    "Retrying",
    "AwaitingRetry",
    "Paused",
    "Cancelling",
]
# the states that hold one of a work pool's slots (as Prefect's pool concurrency counts them)
HOLD_A_SLOT = {"Pending", "Running", "Cancelling"}
NO_DEPLOYMENT = "(none)"  # the deployment label of a run started without one
DELETED = "(deleted)"  # ... and of a run whose deployment is gone (no ids as labels)


@dataclass
class Pool:
    name: str
    slots_used: int
    slots_limit: int | None
    paused: bool
    ready: bool
    workers: dict[str, int]  # status (online, offline) -> count
    last_heartbeat: float | None  # unix time of the newest worker heartbeat


@dataclass
class Current:
    """What is true now (gauges), replaced on every read."""

    in_flight: dict[tuple[str, ...], float] = field(default_factory=dict)  # deployment, state
    pools: list[Pool] = field(default_factory=list)
    expected_interval: dict[str, float] = field(default_factory=dict)  # deployment -> s
    read_at: float = 0.0


class Reader:
    """Feeds `tally` and `current` from the API; `refresh` is safe to call on every scrape
    (two scrapes closer than `min_interval` share one read)."""

    def __init__(
        self,
        client: Callable[[], Any],
        lookback: timedelta = timedelta(hours=24),
        min_interval: float = 5.0,
    ) -> None:
        self.client = client  # makes a SyncPrefectClient (a context manager)
        self.min_interval = min_interval
        self.tally = Tally()
        self.current = Current()
        self.read_errors = 0
        self.api_up = False
        self.read_seconds = 0.0
        self._lock = threading.Lock()
        start = datetime.now(UTC) - lookback
        self._runs_after = start
        self._runs_seen: dict[UUID, datetime] = {}
        self._records_after = start
        self._records_seen: dict[UUID, datetime] = {}
        self._deployments: dict[UUID, str] = {}
        self._successes_read = False

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self.current.read_at < self.min_interval:
                return
            started = time.monotonic()
            try:
                with self.client() as client:
                    self._read(client)
                self.api_up = True
            except Exception as err:  # the exporter outlives an API outage and says so
                self.read_errors += 1
                self.api_up = False
                log.warning("reading the Prefect API failed: %s", err)
            self.read_seconds = time.monotonic() - started

    def _read(self, client: Any) -> None:
        current = Current()
        deployments = list(
            self._pages(lambda offset: client.read_deployments(limit=PAGE, offset=offset))
        )
        self._deployments.update({d.id: d.name for d in deployments})
        for d in deployments:
            self.tally.add_deployment(d.name)
            interval = expected_interval(list(d.schedules or []))
            if interval is not None:
                current.expected_interval[d.name] = interval
        if not self._successes_read:
            self._read_last_successes(client, deployments)
        self._read_ended_runs(client)
        self._read_records(client)
        current.in_flight, slots = self._read_in_flight(client)
        current.pools = self._read_pools(client, slots)
        current.read_at = time.monotonic()
        self.current = current

    def _deployment(self, client: Any, deployment_id: UUID | None) -> str:
        if deployment_id is None:
            return NO_DEPLOYMENT
        if deployment_id not in self._deployments:  # deleted since: read its name once
            found = client.read_deployments(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            self._deployments[deployment_id] = found[0].name if found else DELETED
        return self._deployments[deployment_id]

    def _read_last_successes(self, client: Any, deployments: list[Any]) -> None:
        """The newest completed run of each deployment, however old (freshness after a restart)."""
        for d in deployments:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[d.id]),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.COMPLETED])
                    ),
                ),
                sort=FlowRunSort.END_TIME_DESC,
                limit=1,
            )
            if runs and runs[0].end_time is not None:
                self.tally.last_success[d.name] = runs[0].end_time.timestamp()
        self._successes_read = True

    def _pages(self, read: Callable[[int], list[Any]]) -> Iterator[Any]:
        offset = 0
        while True:
            page = read(offset)
            yield from page
            if len(page) < PAGE:
                return
            offset += PAGE

    def _read_ended_runs(self, client: Any) -> None:
        after = self._runs_after - OVERLAP
        ended = FlowRunFilter(
            id=FlowRunFilterId(not_any_=list(self._runs_seen)),  # only new ones come back
            end_time=FlowRunFilterEndTime.model_validate({"after_": after}),  # a datetime
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=TERMINAL)),
        )
        newest = self._runs_after
        for run in self._pages(
            lambda offset: client.read_flow_runs(
                flow_run_filter=ended, sort=FlowRunSort.END_TIME_DESC, limit=PAGE, offset=offset
            )
        ):
            if run.id in self._runs_seen or run.end_time is None or run.state is None:
                continue
            self._runs_seen[run.id] = run.end_time
            newest = max(newest, run.end_time)
            self.tally.add_run(
                self._deployment(client, run.deployment_id),
                run.state.name,
                run.total_run_time.total_seconds(),
                run.end_time.timestamp(),
            )
        self._runs_after = newest
        self._runs_seen = {k: v for k, v in self._runs_seen.items() if v >= newest - 2 * OVERLAP}

    def _read_records(self, client: Any) -> None:
        """Run records (one artifact per task attempt), newest first until a known one."""
        after = self._records_after - OVERLAP
        keys = ArtifactFilter(key=ArtifactFilterKey(like_=record_key("") + "-%"))
        newest = self._records_after
        for artifact in self._pages(
            lambda offset: client.read_artifacts(
                artifact_filter=keys, sort=ArtifactSort.CREATED_DESC, limit=PAGE, offset=offset
            )
        ):
            if artifact.created is None or artifact.created < after:
                break
            if artifact.id in self._records_seen:
                continue
            self._records_seen[artifact.id] = artifact.created
            newest = max(newest, artifact.created)
            try:
                self.tally.add_record(RunRecord.from_artifact_data(artifact.data))
            except (TypeError, ValueError, KeyError) as err:  # a record from a newer release
                log.warning("run record %s not read: %s", artifact.key, err)
        self._records_after = newest
        self._records_seen = {
            k: v for k, v in self._records_seen.items() if v >= newest - 2 * OVERLAP
        }

    def _read_in_flight(self, client: Any) -> tuple[dict[tuple[str, ...], float], dict[str, int]]:
        """Runs in flight by (deployment, state), and the slots they hold by work pool."""
        in_flight = FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=IN_FLIGHT))
        )
        # 0 for every deployment and state, so a panel or a rule sees the runs leave a state
        counts: dict[tuple[str, ...], float] = {
            (name, state): 0 for name in set(self._deployments.values()) for state in IN_FLIGHT
        }
        slots: dict[str, int] = {}
        for run in self._pages(
            lambda offset: client.read_flow_runs(
                flow_run_filter=in_flight, sort=FlowRunSort.ID_DESC, limit=PAGE, offset=offset
            )
        ):
            if run.state is None:
                continue
            key = (self._deployment(client, run.deployment_id), run.state.name)
            counts[key] = counts.get(key, 0) + 1
            if run.state.name in HOLD_A_SLOT and run.work_pool_name:
                slots[run.work_pool_name] = slots.get(run.work_pool_name, 0) + 1
        return counts, slots

    def _read_pools(self, client: Any, slots: dict[str, int]) -> list[Pool]:
        pools = []
        for pool in client.read_work_pools():
            workers: dict[str, int] = {}
            beats = []
            for worker in client.read_workers_for_work_pool(pool.name):
                status = str(getattr(worker.status, "value", worker.status)).lower()
                workers[status] = workers.get(status, 0) + 1
                if worker.last_heartbeat_time is not None:
                    beats.append(worker.last_heartbeat_time.timestamp())
            pools.append(
                Pool(
                    name=pool.name,
                    slots_used=slots.get(pool.name, 0),
                    slots_limit=pool.concurrency_limit,
                    paused=bool(pool.is_paused),
                    ready=str(getattr(pool.status, "value", pool.status)) == "READY",
                    workers=workers,
                    last_heartbeat=max(beats) if beats else None,
                )
            )
        return pools
