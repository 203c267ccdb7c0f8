"""Reruns of crashed flow runs: bounded, backed off, and saying why the last attempt died.

`flows setup` installs an automation that sets a Crashed flow run of a `dlt` deployment back
to Scheduled (Prefect itself never retries a Crashed run). The rerun keeps its flow run id,
so its dlt tasks take over the dead attempt's lease and resume from the state store. What
the automation cannot do, the first dlt task of the rerun does here:

- names the crash cause from the run's state history (the worker's message: the exit
  signal, OOMKilled, Evicted) in the log and the run report;
- backs off before it starts: `FLOWS_CRASH_RERUN_BACKOFF` seconds doubled per crash, with
  jitter, at most 300 s;
- refuses, terminally, a run that crashed more than `FLOWS_CRASH_RERUNS` times,
  so that a run which always dies (too little memory) ends Failed instead of looping.

And `fail_terminal_loads`, in the pod's engine (flows/prefect/pod.py): a flow that does not
load for a reason no rerun fixes (its module does not import: a wrong project folder or
image) ends Failed with one line. Prefect's engine would exit 1 with the run still Pending,
the worker would report it Crashed and the automation would rerun the same error.

Both settings are read from the environment only (flows/config/pod.py has their defaults): this runs
in a flow run's engine, which never imports dlt.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flows.config.pod import CRASH_RERUN_BACKOFF, CRASH_RERUNS
from flows.errors import TerminalError, is_terminal, one_line

_checked: set[tuple[str, int]] = set()  # (flow run id, run count) already handled


@dataclass(frozen=True)
class CrashHistory:
    crashes: int
    last_cause: str


class TooManyCrashesError(TerminalError):
    """The flow run crashed more often than the rerun bound allows."""


def crash_history(client: Any, flow_run_id: UUID) -> CrashHistory:
    from prefect.client.schemas.objects import StateType

    states = sorted(client.read_flow_run_states(flow_run_id), key=lambda s: s.timestamp)
    crashed = [s for s in states if s.type == StateType.CRASHED]
    cause = (crashed[-1].message or "no message") if crashed else ""
    return CrashHistory(len(crashed), cause)


def before_attempt(flow_run_id: UUID | None, run_count: int, log: Any) -> CrashHistory | None:
    """On the first dlt task of a rerun after a crash: log the cause, back off, or refuse."""
    if flow_run_id is None or run_count <= 1 or (str(flow_run_id), run_count) in _checked:
        return None
    _checked.add((str(flow_run_id), run_count))
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        history = crash_history(client, flow_run_id)
    if not history.crashes:
        return None
    limit = CRASH_RERUNS.get()
    if history.crashes > limit:
        raise TooManyCrashesError(
            f"flow run {flow_run_id} crashed {history.crashes} times ({CRASH_RERUNS.name} = "
            f"{limit}); last cause: {history.last_cause}"
        )
    base = CRASH_RERUN_BACKOFF.get()
    delay = min(300.0, base * 2 ** (history.crashes - 1)) * random.uniform(0.5, 1.5)
    log.warning(
        "rerun %d of %d after a crash; the last attempt died: %s. Resuming from the state "
        "store in %.0f s",
        history.crashes,
        limit,
        history.last_cause,
        delay,
    )
    time.sleep(delay)
    return history


def fail_terminal_loads() -> None:
    """Makes Prefect's engine set a run Failed when its flow cannot load for a terminal
    reason (flows/errors.py); a Failed run is never set Crashed (Prefect refuses that
    transition), so the crash automation leaves it alone. Call before the engine runs."""
    import prefect.flow_engine as flow_engine

    load = flow_engine.load_flow

    @functools.wraps(load)
    def load_flow(flow_run: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return load(flow_run, *args, **kwargs)
        except Exception as err:
            if is_terminal(err):
                from prefect.client.orchestration import get_client
                from prefect.states import Failed

                failed: Any = Failed(message=f"the flow did not load: {one_line(err)}")
                with get_client(sync_client=True) as client:
                    client.set_flow_run_state(flow_run.id, failed, force=True)
            raise

    flow_engine.load_flow = load_flow
