"""Entry point of a task attempt's child process: `python -m flows.prefect.child < request`.

The request is a pickled `RunRequest` (parent and child run the same code).

Prints the run report on one line prefixed with FLOWS_REPORT; exits like the `flows` CLI.
"""

from __future__ import annotations

import json
import logging
import sys

import cloudpickle

from flows.errors import exit_code_for, first_platform_error, is_terminal, root_cause
from flows.prefect.tasks import ERROR_PREFIX, REPORT_PREFIX, RunRequest, execute


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s"
    )
    request: RunRequest = cloudpickle.loads(sys.stdin.buffer.read())
    try:
        report = execute(request)
    except Exception as err:
        cause = first_platform_error(err) or root_cause(err)
        failure = {
            "type": type(cause).__name__,
            "message": str(cause).strip()[:2000],
            "terminal": is_terminal(err),
            "exit_code": exit_code_for(err),
        }
        print(f"error: {type(cause).__name__}: {cause}", flush=True)
        print(ERROR_PREFIX + json.dumps(failure), flush=True)
        return exit_code_for(err)
    print(REPORT_PREFIX + json.dumps(report, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
