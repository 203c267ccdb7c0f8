"""Worker processes die with the process that forked them.

dlt's normalize pool forks its workers (sizing.py). When the pipeline process is SIGKILLed
(OOM kill, a lost attempt), forked workers are orphaned: each holds the pool's pipes, so none
ever sees EOF; they keep their memory in the pod, and the stdout pipe of an isolated attempt
stays open, so its parent waits forever. PR_SET_PDEATHSIG has the kernel kill each forked
process with the process that forked it. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_registered = False
_forker = 0


def _before_fork() -> None:
    global _forker
    _forker = os.getpid()


def _after_fork_in_child() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _forker:  # the parent died before prctl took effect
        os._exit(1)


def die_with_parent() -> None:
    """Every process this one forks from now on is killed when this one dies."""
    global _registered
    if _registered or not sys.platform.startswith("linux"):
        return
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    _registered = True
