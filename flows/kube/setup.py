"""`flows setup`: the work pool, its limits, the failure alert and the crash automations,
created or updated in place.

Idempotent: run it on every install, upgrade and rollback (the Helm chart's hook Job does).
The pool's concurrency limit and the tag limits are merged with an operator's changes
(flows/kube/release.py): a release that does not change a limit leaves the operator's; an
unset `--pool-concurrency` leaves the pool's limit alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from flows.kube.pool_template import base_job_template
from flows.kube.release import describe, merge_object, record_name

AUTOMATION_NAME = "dlt-run-failed"
RERUN_AUTOMATION_NAME = "dlt-rerun-crashed"
UNRESPONSIVE_AUTOMATION_NAME = "dlt-crash-unresponsive"
# a flow run's engine sends a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (180
# unless set, 30 at the least): three missed, and a margin, before a Running run counts as gone
UNRESPONSIVE_AFTER_SECONDS = 600
MIN_UNRESPONSIVE_AFTER_SECONDS = 60  # two beats at the fastest frequency
WEBHOOK_BLOCK_NAME = "dlt-failure-webhook"
FAILURE_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
WEBHOOK_PAYLOAD = (
    '{"text": {{ ("dlt flow run " ~ flow_run.name ~ " of " ~ deployment.name ~ " is " ~ '
    'flow_run.state.name ~ ": " ~ flow_run.state.message) | tojson }}, '
    '"flow_run_id": "{{ flow_run.id }}", "deployment": {{ deployment.name | tojson }}, '
    '"state": "{{ flow_run.state.name }}"}'
)


@dataclass
class SetupOptions:
    pool: str = "dlt-k8s"
    pool_type: str = "kubernetes"
    template_path: Path | None = None
    pool_concurrency: int | None = None  # None: the pool's limit is the operator's
    tag_limits: dict[str, int] = field(default_factory=lambda: {"dlt": 8})
    alert_webhook_url: str | None = None
    alert_block: str | None = None  # "<block-type-slug>/<name>" of a notification block
    unresponsive_after: int = UNRESPONSIVE_AFTER_SECONDS  # 0: no unresponsive-run automation


def local_process_template() -> dict[str, Any]:
    """A process pool that validates job_variables exactly like the Kubernetes pool.

    Locally the resource variables are declared but unused, so a deployment that the
    cluster would reject is rejected on a laptop too.
    """
    from prefect.workers.process import ProcessWorker

    process = ProcessWorker.get_default_base_job_template()
    kubernetes = base_job_template()
    variables = dict(kubernetes["variables"])
    variables["properties"] = {
        **kubernetes["variables"]["properties"],
        **process["variables"]["properties"],
    }
    return {"job_configuration": process["job_configuration"], "variables": variables}


def pool_template(options: SetupOptions) -> dict[str, Any]:
    if options.template_path is not None:
        return dict(json.loads(options.template_path.read_text()))
    return base_job_template() if options.pool_type == "kubernetes" else local_process_template()


def run_setup(options: SetupOptions) -> list[str]:
    """Applies everything; returns one line per object saying what was done."""
    from prefect.client.orchestration import get_client

    done: list[str] = []
    template = pool_template(options)
    with get_client(sync_client=True) as client:
        done.append(_apply_pool(client, options, template))
        done.extend(_apply_tag_limits(client, options.tag_limits))
        done.append(_apply_automation(client, options))
        done.append(_apply_crash_rerun(client))
        done.append(apply_unresponsive_crash(client, options.unresponsive_after))
    return done


def _dlt_flow_runs(events: set[str]) -> Any:
    """A trigger on flow runs of deployments tagged `dlt`."""
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect=events,
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.dlt"},
        posture=Posture.Reactive,
        threshold=1,
    )


def _upsert_automation(client: Any, automation: Any) -> str:
    existing = client.read_automations_by_name(automation.name)
    if existing:
        client.update_automation(existing[0].id, automation)
        for extra in existing[1:]:
            client.delete_automation(extra.id)
        return "updated"
    client.create_automation(automation)
    return "created"


def _delete_automations(client: Any, name: str) -> None:
    for old in client.read_automations_by_name(name):
        client.delete_automation(old.id)


def _apply_crash_rerun(client: Any) -> str:
    """A Crashed run (its pod OOM-killed as a whole, evicted, its node lost) is not retried
    by Prefect: this automation schedules it again. The rerun keeps its flow run id, so it
    takes over the lease of the dead attempt and resumes from the state store; reruns are
    bounded and backed off by the dlt task itself (flows/prefect/reruns.py)."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore

    automation = AutomationCore(
        name=RERUN_AUTOMATION_NAME,
        description="Rerun a crashed flow run of a deployment tagged dlt (it resumes)",
        trigger=_dlt_flow_runs({"prefect.flow-run.Crashed"}),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="AwaitingRetry",
                message="rerun after a crash (automation dlt-rerun-crashed)",
                force=True,
            )
        ],
    )
    return f"crash rerun automation {_upsert_automation(client, automation)}"


def apply_unresponsive_crash(client: Any, after_seconds: int) -> str:
    """A Running flow run whose heartbeats stop (its node lost, and with it the worker that
    would have reported the pod's end) would stay Running for ever: this marks it Crashed
    once no heartbeat and no state change of it came for `after_seconds`, and
    dlt-rerun-crashed then reruns it from the state store. Prefect's own recipe for zombie
    flow runs, limited to deployments tagged dlt; 0 removes it."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    if after_seconds <= 0:
        _delete_automations(client, UNRESPONSIVE_AUTOMATION_NAME)
        return "unresponsive-run automation: none (--unresponsive-after 0)"
    automation = AutomationCore(
        name=UNRESPONSIVE_AUTOMATION_NAME,
        description=(
            f"Crash a running flow run of a deployment tagged dlt, silent for {after_seconds} s"
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},  # the next heartbeat, or any change of state
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "tag",
                "prefect.resource.id": "prefect.tag.dlt",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name="Crashed",
                force=False,  # a run that has ended meanwhile stays as it ended
                message=(
                    f"no heartbeat for {after_seconds} s "
                    f"(automation {UNRESPONSIVE_AUTOMATION_NAME})"
                ),
            )
        ],
    )
    done = _upsert_automation(client, automation)
    return f"unresponsive-run automation {done}: Crashed after {after_seconds} s silent"


def _apply_pool(client: Any, options: SetupOptions, template: dict[str, Any]) -> str:
    """Creates the pool, or updates its template and, merged, its concurrency limit; its
    paused state and description are never touched."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    try:
        existing = client.read_work_pool(options.pool)
    except ObjectNotFound:
        existing = None
    if existing is not None and existing.type != options.pool_type:
        raise ValueError(
            f"work pool {options.pool!r} exists with type {existing.type!r}, not "
            f"{options.pool_type!r}: delete it or choose another --pool"
        )
    release = (
        {} if options.pool_concurrency is None else {"concurrency_limit": options.pool_concurrency}
    )
    live = None if existing is None else {"concurrency_limit": existing.concurrency_limit}
    merge = merge_object(client, record_name("pool", options.pool), release, live)
    limit = merge.merged.get("concurrency_limit")
    if existing is None:
        client.create_work_pool(
            WorkPoolCreate(
                name=options.pool,
                type=options.pool_type,
                base_job_template=template,
                concurrency_limit=limit,
            )
        )
        return f"work pool {options.pool!r} ({options.pool_type}) created (concurrency {limit})"
    update = WorkPoolUpdate(base_job_template=template)
    if release and limit != existing.concurrency_limit:
        update.concurrency_limit = limit
    client.update_work_pool(options.pool, update)
    return describe(f"work pool {options.pool!r} updated", merge, live or {})


def _apply_tag_limits(client: Any, limits: dict[str, int]) -> list[str]:
    """Task concurrency limits per tag, merged like the pool's: an operator's change to a
    limit the release does not change stays."""
    from prefect.exceptions import ObjectNotFound

    done = []
    for tag, limit in limits.items():
        try:
            live = {"limit": client.read_concurrency_limit_by_tag(tag).concurrency_limit}
        except ObjectNotFound:
            live = None
        merge = merge_object(client, record_name("tag-limit", tag), {"limit": limit}, live)
        value = merge.merged["limit"]
        if live is None or live["limit"] != value:
            client.create_concurrency_limit(tag=tag, concurrency_limit=value)
        done.append(describe(f"tag concurrency limit {tag!r} = {value}", merge, live or {}))
    return done


def _apply_automation(client: Any, options: SetupOptions) -> str:
    from prefect.events.actions import CallWebhook, SendNotification
    from prefect.events.schemas.automations import AutomationCore

    action: CallWebhook | SendNotification
    if options.alert_webhook_url:
        from prefect.blocks.webhook import Webhook
        from pydantic import SecretStr

        block_id = Webhook(method="POST", url=SecretStr(options.alert_webhook_url)).save(
            WEBHOOK_BLOCK_NAME, overwrite=True
        )
        action = CallWebhook(block_document_id=cast(UUID, block_id), payload=WEBHOOK_PAYLOAD)
        target = f"webhook {options.alert_webhook_url}"
    elif options.alert_block:
        slug, _, name = options.alert_block.partition("/")
        document = client.read_block_document_by_name(name=name, block_type_slug=slug)
        action = SendNotification(
            block_document_id=document.id,
            subject="dlt flow run {{ flow_run.name }} is {{ flow_run.state.name }}",
            body="{{ deployment.name }}: {{ flow_run.state.message }}",
        )
        target = f"notification block {options.alert_block}"
    else:
        _delete_automations(client, AUTOMATION_NAME)
        return "failure alert: none configured (pass --alert-webhook-url or --alert-block)"

    automation = AutomationCore(
        name=AUTOMATION_NAME,
        description="Alert when a flow run of a deployment tagged dlt fails or crashes",
        trigger=_dlt_flow_runs(set(FAILURE_EVENTS)),
        actions=[action],
    )
    return f"failure alert {_upsert_automation(client, automation)}: {target}"
