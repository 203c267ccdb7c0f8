"""Flow-run heartbeats that stop the moment their run ends, in the flow-run pod's engine.

Prefect's flow engine sends a run's heartbeats (`prefect.flow-run.heartbeat`, every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds; what `flows setup`'s dlt-crash-unresponsive
automation reads) from a thread that sleeps in steps of one second, and joins that thread
when the run ends. So the engine, and with it the pod, waits up to a second after the run
for nothing. Measured here in a one-off run from Prefect's log timestamps (2026-12-05,
300,000 synthetic rows, the pod's command, 4 flow runs each): from the end of the run's
last task to the end of the run, 1.04-1.18 s; with the thread below, which waits on its
stop event instead, 0.05-0.15 s. The events, their resource and related resources, the
interval and the thread are Prefect's: only the wait differs.

Prefect 3.8.8 and 3.9.1 both sleep in steps; 3.8.8 has no setting that turns heartbeats off
(PREFECT_FLOWS_HEARTBEAT_FREQUENCY takes 30 or more), and the automation needs them. The pod's
engine (flows/prefect/pod.py) installs this for the Prefect versions it was checked against
(VERIFIED); any other version keeps Prefect's own, unchanged.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Prefect versions whose flow engine calls `_send_heartbeats(engine, join_on_exit)` as below
VERIFIED = frozenset({"3.8.8"})

log = logging.getLogger(__name__)


def install() -> bool:
    """Has this process's Prefect flow engine send heartbeats from `send_heartbeats`; False
    (nothing changed) on a Prefect version not in VERIFIED."""
    import prefect
    import prefect.flow_engine

    if prefect.__version__ not in VERIFIED:
        return False
    prefect.flow_engine._send_heartbeats = send_heartbeats
    return True


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """What Prefect's `_send_heartbeats` does for a running flow run: a heartbeat now and
    every `engine.heartbeat_seconds`, none once the run's state is final, none after the
    block; its thread wakes as soon as the block ends."""
    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            state = engine.flow_run.state if engine.flow_run else None
            if state is not None and state.is_final():
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:
                log.debug("could not emit a flow-run heartbeat", exc_info=True)
            stop.wait(seconds)

    # the thread sees the caller's settings (the API URL among them), as Prefect's does
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name="flows-heartbeat", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)
