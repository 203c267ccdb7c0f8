"""Entry point of a task attempt's child process: `python -m flows.prefect.child < attempt`.

The attempt is a pickled `Attempt` (parent and child run the same code). stdout carries
only protocol messages (flows.prefect.protocol): everything else the process writes to its
fd 1, a user's `print` included, goes to stderr, which the parent logs. Exits like the
`flows` CLI. Never imports prefect.
"""

from __future__ import annotations

import logging
import os
import sys

import cloudpickle

from flows.errors import exit_code_for, first_platform_error, is_terminal, root_cause
from flows.prefect.attempt import Attempt, run_attempt
from flows.prefect.protocol import MessageSink


def main() -> int:
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    sink = MessageSink(channel)
    attempt: Attempt = cloudpickle.loads(sys.stdin.buffer.read())
    try:
        report = run_attempt(attempt, sink)
    except Exception as err:
        cause = first_platform_error(err) or root_cause(err)
        print(f"error: {type(cause).__name__}: {cause}", flush=True)
        sink.send(
            "error",
            type=type(cause).__name__,
            message=str(cause).strip()[:2000],
            terminal=is_terminal(err),
            exit_code=exit_code_for(err),
        )
        return exit_code_for(err)
    sink.send("report", report=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
