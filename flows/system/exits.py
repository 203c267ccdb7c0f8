"""Ending a process that has run a pipeline, without tearing its interpreter down.

Standard library only: the flow-run pod's supervisor (flows/prefect/pod.py) imports it
before anything heavy.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Ends the process once its output is out, without tearing the interpreter down.

    Python's teardown frees every module and object one by one: after a run has imported
    dlt, pyarrow and DuckDB (about 1,100 modules) it took 0.2-0.3 s here, about as long as
    DuckDB takes to load 100,000 rows; after a Prefect flow run, about 0.5 s. What an exit
    must do still happens: threading's exit hooks run and non-daemon threads are joined,
    atexit handlers run (logging's flush among them), stdout and stderr are flushed. A run's
    lease is released and its snapshots written before the caller gets here.
    """
    # the interpreter's own first two exit steps, in its order: threading's exit hooks (where
    # Prefect drains its log and event workers) and the join of non-daemon threads, then atexit
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe has nothing to flush
            stream.flush()
    os._exit(code)
