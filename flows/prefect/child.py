"""Entry point of a task attempt's child process: `python -m flows.prefect.child < request.json`.

Prints the run report on one line prefixed with FLOWS_REPORT; exits like the `flows` CLI.
"""

from __future__ import annotations

import json
import logging
import sys

from flows.cli import exit_code_for
from flows.prefect.tasks import REPORT_PREFIX, RunRequest, execute


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s"
    )
    request = RunRequest(**json.loads(sys.stdin.read()))
    try:
        report = execute(request)
    except Exception as err:
        print(f"error: {type(err).__name__}: {err}", flush=True)
        return exit_code_for(err)
    print(REPORT_PREFIX + json.dumps(report, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
