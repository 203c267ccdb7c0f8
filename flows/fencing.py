"""Destination writes only while the lease is held.

dlt's load step is the only one that writes to the destination. While it runs under
`guard(pipeline, lease)`:

- before each load job starts, the lease must be inside its self-fence deadline (no I/O);
- before a package is recorded as loaded (`_dlt_loads`), the lease is read back from the
  store and must still be this run's, unrevoked: the record that marks a package loaded is
  written only by the current holder;
- if the lease is lost or cannot be renewed in time, the process exits at once, with the
  lease exit code (3) or the unreachable-store code (5). dlt's load threads cannot be
  stopped from outside, and a process that is gone commits nothing more: its open
  transactions are rolled back by the database. The takeover rules in state/lease.py make
  sure nobody else writes before this process is gone.

dlt offers no hook at these two points, so `Load.submit_job` and `Load.complete_package` are
wrapped once per process; the wrappers do nothing for a pipeline that no guard covers.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.load import Load

from flows.errors import exit_code_for, one_line
from flows.state import Lease, StateStoreError

_guarded: dict[str, Lease] = {}  # load storage path -> the lease that covers it
_lock = threading.Lock()
_installed = False


def _lease_of(load: Load) -> Lease | None:
    path = str(Path(load.load_storage.storage.storage_path).resolve())
    return _guarded.get(path)


def _wrap(method: Callable[..., Any], verify: bool) -> Callable[..., Any]:
    @functools.wraps(method)
    def fenced(self: Load, *args: Any, **kwargs: Any) -> Any:
        lease = _lease_of(self)
        if lease is not None:
            lease.verify() if verify else lease.check()
        return method(self, *args, **kwargs)

    return fenced


def install() -> None:
    """Wraps dlt's load step once per process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        Load.submit_job = _wrap(Load.submit_job, verify=False)  # type: ignore[method-assign]
        Load.complete_package = _wrap(Load.complete_package, verify=True)  # type: ignore[method-assign]
        _installed = True


def stop_process(error: StateStoreError) -> None:
    """A fenced writer in the middle of a load: leave now, commit nothing more."""
    sys.stderr.write(f"error: {one_line(error)} (fenced: stopping at once)\n")
    sys.stderr.flush()
    os._exit(exit_code_for(error))


@contextmanager
def guard(
    pipeline: dlt.Pipeline,
    lease: Lease,
    on_fenced: Callable[[StateStoreError], None] = stop_process,
) -> Iterator[None]:
    """Fences `pipeline`'s destination writes with `lease` for the duration of the block."""
    install()
    path = str((Path(pipeline.working_dir) / "load").resolve())
    previous = lease.on_fenced
    with _lock:
        _guarded[path] = lease
    lease.on_fenced = on_fenced
    try:
        lease.check()
        yield
    finally:
        lease.on_fenced = previous
        with _lock:
            _guarded.pop(path, None)
