"""A flow-run pod's main process: Prefect's engine as its one child, SIGTERM handled as
`prefect flow-run execute` handles it, without what that command costs.

    python -m flows.prefect.pod        (the Kubernetes pool's `command`; reads
                                        PREFECT__FLOW_RUN_ID like Prefect's command)

With no `command` in the pool, the worker starts Prefect's `prefect flow-run execute`: the
Prefect CLI stays up for the whole run (about 90 MB of the pod's memory) and starts Prefect's
workspace supervisor, which starts the engine: three Prefect imports one after the other,
about 2.5 s before the flow begins. Measured with `python -m tests.benchmarks --suites
prefect` (300,000 rows, 2 CPUs, 2026-12-05): 1.54x the wall time and 1.35x the cgroup peak
of plain `pipeline.run()`; with this command 1.13x and 1.08x. This process imports nothing
of Prefect's while the run goes on; its child runs Prefect's own engine entrypoint, the
`__main__` of `prefect.engine` (it reads the flow run, runs the deployment's pull steps and
the flow, and reports the run's state), and exits without tearing its interpreter down.
Before it imports Prefect, the engine starts its first attempt's interpreter
(`flows.attempt.start.prewarm`), which imports dlt meanwhile on the pod's other CPU
and waits for the attempt; `FLOWS_PREWARM_ATTEMPT=0` turns that off (a flow that runs no
dlt task then does not hold the waiting interpreter, about 100 MiB, for up to 120 s).
The engine sends the run's heartbeats from a thread that ends with the run
(flows/prefect/heartbeats.py): Prefect's sleeps in 1 s steps, and its engine waits for it
after the run's final state, about a second per run.

What it keeps of Prefect's command:

- **SIGTERM** (eviction, node drain, the Job deleted). With
  `PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule` (prefect-kubernetes sets it on Jobs
  with `backoffLimit: 0`, the only value the pool allows) the engine is stopped first
  (SIGSTOP, so that it reports nothing of its own), the run is proposed `AwaitingRetry`
  unless it has already ended or is being cancelled, then the engine is killed and the pod
  exits 0: the run is scheduled again and its next pod resumes from the state store (if
  the API cannot be reached, the pod exits 1, so that the worker reports the run Crashed
  and the crash automation reruns it, where Prefect's command leaves it Running). Without
  that setting the engine receives the SIGTERM and reports the run Crashed, as under
  Prefect's command.
- **The run deadline** (`active_deadline_seconds`, the Job's `activeDeadlineSeconds`): a
  SIGTERM that comes when the pod has run for at least the deadline less the start timeout
  (the Job's clock starts before the pod's, by at most that) is the deadline's: the run is
  proposed Failed with the bound in its message, not rescheduled, whatever the behaviour
  setting, and the pod exits 1.
- **The exit code** is the engine's (128 + the signal if a signal ended it).
- **A flow that does not load** for a terminal reason (its module does not import) ends
  Failed with one line (flows/prefect/reruns.py), not Crashed: no crash rerun repeats it.

What it drops: the workspace supervisor's temporary workspace and its crash hooks, which run
a flow's `on_crashed` hooks when the engine dies; the platform's flows declare none (a crash
is reported by the worker and rerun by `flows setup`'s automation).

Only the standard library (and the platform's exit codes and pod settings,
flows/config/pod.py) is imported up front: Prefect's client is imported when a SIGTERM asks
for a reschedule.
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import subprocess
import sys
import time
import warnings
from types import FrameType
from typing import Any, NoReturn
from uuid import UUID

from flows.config.pod import PREWARM_ATTEMPT, RUN_BOUNDS, RunBounds
from flows.errors import EXIT_CONFIG, ConfigError
from flows.system.exits import exit_now

ENGINE = (sys.executable, "-m", "flows.prefect.pod", "engine")
RUN_ID_ENV = "PREFECT__FLOW_RUN_ID"
BEHAVIOR_ENV = "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"

log = logging.getLogger("flows.pod")


class Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler, out of the wait for the engine."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def exit_code(returncode: int) -> int:
    """A shell's exit code for a child's return code (negative: ended by that signal)."""
    return 128 - returncode if returncode < 0 else returncode


def reschedule(flow_run_id: UUID) -> str:
    """Proposes AwaitingRetry for the run unless it ended or is being cancelled; says what
    was done."""
    from prefect.client.orchestration import get_client
    from prefect.states import AwaitingRetry
    from prefect.utilities.engine import propose_state_sync

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
        # Crashed does not block: the worker may report an eviction before this lands
        ended = state is not None and state.is_final() and not state.is_crashed()
        if state is not None and (ended or state.is_cancelling()):
            return f"not rescheduled: the run is {state.name}"
        proposed: Any = propose_state_sync(client, AwaitingRetry(), flow_run_id=flow_run_id)
        return f"rescheduled: the run is {proposed.name}"


def at_deadline(bounds: RunBounds, uptime: float) -> bool:
    """Whether a SIGTERM after `uptime` seconds of this pod is the run deadline's."""
    if bounds.deadline is None:
        return False
    return uptime >= bounds.deadline - (bounds.start_timeout or 0)


def fail_at_deadline(flow_run_id: UUID, deadline: int) -> str:
    """Proposes Failed (not a rerun: the next run would meet the same bound)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Failed
    from prefect.utilities.engine import propose_state_sync

    message = (
        f"stopped at its run deadline of {deadline} s (job variable active_deadline_seconds):"
        " not rerun; raise the bound or split the run"
    )
    with get_client(sync_client=True) as client:
        proposed: Any = propose_state_sync(client, Failed(message=message), flow_run_id=flow_run_id)
    return f"the run is {proposed.name}: {message}"


def on_sigterm(engine: subprocess.Popen[bytes], flow_run_id: UUID, uptime: float) -> int:
    """The pod is being stopped: reschedule the run (or let the engine report the crash), or
    fail it when the stop is its run deadline's."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # Kubernetes may repeat it
    bounds = RUN_BOUNDS.get()
    if at_deadline(bounds, uptime):
        engine.send_signal(signal.SIGSTOP)
        try:
            log.warning(
                "SIGTERM at the deadline: %s", fail_at_deadline(flow_run_id, bounds.deadline or 0)
            )
        except Exception as err:
            log.error("SIGTERM at the deadline: failing flow run %s failed: %s", flow_run_id, err)
        finally:
            engine.kill()
            engine.wait()
        return 1
    if os.environ.get(BEHAVIOR_ENV, "").lower() != "reschedule":
        engine.send_signal(signal.SIGTERM)
        return exit_code(engine.wait())
    engine.send_signal(signal.SIGSTOP)
    try:
        log.warning("SIGTERM: %s", reschedule(flow_run_id))
        return 0
    except Exception as err:
        # Prefect's command exits 0 here and leaves the run Running; a failed Job instead
        # has the worker report it Crashed, and `flows setup`'s automation reruns it
        log.error("SIGTERM: rescheduling flow run %s failed: %s", flow_run_id, err)
        return 1
    finally:
        engine.kill()  # its attempt dies with it (PR_SET_PDEATHSIG, flows/system/workers.py)
        engine.wait()


def run_engine() -> NoReturn:
    """The child: `python -m prefect.engine` as Prefect runs it, then `exit_now`, which
    skips the interpreter's teardown (about 0.5 s after a flow run) and keeps every exit
    step Prefect relies on (its log and event workers drain in threading's exit hooks)."""
    from flows.attempt.start import prewarm

    del sys.argv[1:]  # Prefect's engine takes a first argument as the flow run id
    if PREWARM_ATTEMPT.get():
        prewarm()  # the attempt's interpreter imports dlt while this one imports Prefect
    from flows.prefect import heartbeats, reruns

    heartbeats.install()
    reruns.fail_terminal_loads()  # a flow that does not import ends Failed, not Crashed
    # Prefect's flow engine, imported by install(), imports `prefect.engine`: runpy warns
    # that the module it runs as __main__ is loaded already, as it would be a moment later
    # anyway (the __main__ imports the flow engine)
    warnings.filterwarnings("ignore", "'prefect.engine' found in sys.modules", RuntimeWarning)
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as done:  # the engine ends a failed or aborted run with exit()
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    exit_now(code)


def main() -> int:
    # its own lines only: the reschedule's HTTP client logs each request at INFO
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    raw = os.environ.get(RUN_ID_ENV, "")
    try:
        flow_run_id = UUID(raw)
    except ValueError:
        print(f"error: {RUN_ID_ENV} = {raw!r} is not a flow run id", file=sys.stderr)
        return EXIT_CONFIG
    started = time.monotonic()
    try:
        PREWARM_ATTEMPT.get()
        RUN_BOUNDS.get()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    engine: subprocess.Popen[bytes] | None = None
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
        engine = subprocess.Popen(ENGINE)
        return exit_code(engine.wait())
    except Terminated:
        if engine is None:  # stopped before the engine started: nothing ran
            return exit_code(-signal.SIGTERM)
        return on_sigterm(engine, flow_run_id, time.monotonic() - started)


if __name__ == "__main__":
    if sys.argv[1:] == ["engine"]:
        run_engine()
    sys.exit(main())
