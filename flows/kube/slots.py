"""Concurrency slots that nobody will give back.

A task run takes a slot of each tag limit (`dlt=8`) when it starts and gives it back when it
ends; a pod killed mid-task (OOM, eviction, a lost node) never gives it back, and Prefect
3.8.8 keeps such a slot for ever (tag limits are held by leases of about 100 years,
PrefectHQ/prefect#17415): eight of them and no dlt task runs again. A slot is leaked when the
task run holding it can no longer end by itself: it has ended, it is gone, or its flow run
has ended or moved on since the task run last changed (a rerun of a crashed flow run starts
new task runs; the old one stays Running for ever).

Deployment concurrency limits are held by leases the running engine renews: Prefect's own
repossessor service frees the slot of a dead run once its lease expires (300 s by default),
so those are reported (`flows doctor`), not released here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

PAGE = 200


@dataclass(frozen=True)
class LeakedSlot:
    tag: str
    task_run_id: UUID
    why: str

    def __str__(self) -> str:
        return f"tag {self.tag!r}: task run {self.task_run_id} ({self.why})"


def _why_leaked(client: Any, task_run_id: UUID) -> str | None:
    from prefect.exceptions import ObjectNotFound

    try:
        task = client.read_task_run(task_run_id)
    except ObjectNotFound:
        return "the task run no longer exists"
    if task.state is not None and task.state.is_final():
        return f"the task run is {task.state.name}"
    if task.flow_run_id is None:
        return None
    try:
        flow = client.read_flow_run(task.flow_run_id)
    except ObjectNotFound:
        return "its flow run no longer exists"
    if flow.state is None:
        return None
    if flow.state.is_final():
        return f"its flow run is {flow.state.name}"
    if task.state is not None and flow.state.timestamp > task.state.timestamp:
        return f"its flow run moved on to {flow.state.name} after the task run last changed"
    return None


def leaked_tag_slots(client: Any) -> list[LeakedSlot]:
    """Every slot of every tag limit held by a task run that will not give it back."""
    leaked = []
    offset = 0
    while True:
        limits = client.read_concurrency_limits(limit=PAGE, offset=offset)
        for limit in limits:
            for holder in limit.active_slots:
                why = _why_leaked(client, holder)
                if why is not None:
                    leaked.append(LeakedSlot(limit.tag, holder, why))
        if len(limits) < PAGE:
            return leaked
        offset += PAGE


def release(client: Any, slot: LeakedSlot) -> None:
    """Gives back that one slot (the other holders keep theirs)."""
    client.decrement_v1_concurrency_slots(
        names=[slot.tag], task_run_id=slot.task_run_id, occupancy_seconds=0
    )


def release_leaked(client: Any) -> list[str]:
    """Releases every leaked tag slot; a line for each."""
    done = []
    for slot in leaked_tag_slots(client):
        release(client, slot)
        done.append(f"released a leaked slot: {slot}")
    return done


def deployment_slots(client: Any) -> list[str]:
    """Deployments whose limit counts more slots taken than runs that can hold one (Pending,
    Running, Cancelling): slots the repossessor frees when their leases expire."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    active = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    found = []
    for deployment in client.read_deployments():
        limit = deployment.global_concurrency_limit
        if limit is None or not limit.active_slots:
            continue
        holding = client.count_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active))
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
        )
        if limit.active_slots > holding:
            found.append(
                f"deployment {deployment.name}: {limit.active_slots} slots taken, {holding} "
                "runs hold one (freed when their leases expire)"
            )
    return found
