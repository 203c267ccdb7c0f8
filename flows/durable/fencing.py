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

A process frozen for longer than the lease (SIGSTOP, a paused VM, a long GC pause) cannot
fence itself in time: it wakes fenced, but a transaction it had in flight could still commit.
On PostgreSQL the destination fences it (`Fence`): a table `_flows_fence(pipeline_name,
epoch, token)` in the dataset names the current holder. A new holder, before it looks at
what is loaded (resume) or loads anything, bumps the epoch in its own transaction, after
terminating every backend of an earlier holder of the pipeline (their open transactions roll
back; a frozen holder that holds the fence row blocks the bump, so it is terminated, not
waited for). Each transaction of the load checks, just before COMMIT, that the fence row
still names its lease (`SELECT ... FOR SHARE`, held until the commit); a stale holder's
commit fails (exit 3). DuckDB needs no fence: the writer holds an exclusive lock on the
database file, so a frozen holder blocks the next one instead. Other destinations
(filesystem among them) are not fenced at the destination.

dlt offers no hook at these points, so this module wraps dlt internals once per process:
`Load.submit_job`, `Load.complete_package`, `SqlJobClientBase.complete_load` (so that the
`_dlt_loads` record is written in a fenced transaction) and
`Psycopg2SqlClient.open_connection` / `.commit_transaction`. The wrappers (`_wrap`,
`_in_transaction`, `_named`, `_checked`) are here; flows/dlt_internals.py installs them and
names every internal they touch. The wrappers do nothing for a pipeline that no guard
covers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import psycopg2
import psycopg2.errors
import tenacity

from flows import dlt_internals
from flows.errors import exit_code_for, one_line
from flows.state import Lease, LeaseLostError, StateStoreError

log = logging.getLogger(__name__)

FENCE_TABLE = "_flows_fence"
LOCK_TIMEOUT = "2s"  # a bump blocked longer than this terminates the blockers and tries again

_guarded: dict[str, Lease] = {}  # load storage path -> the lease that covers it
_fences: list[Fence] = []  # the destination fences of the guarded pipelines
_lock = threading.Lock()
_installed = False


class FenceLostError(LeaseLostError):
    """The destination's fence names another holder: this run's transaction rolled back."""


@dataclass(frozen=True)
class Fence:
    """The fence row of one pipeline in its PostgreSQL dataset, and the lease it stands for."""

    pipeline_name: str
    dataset: str
    staging: str
    table: str  # qualified name of the fence table
    lease: Lease

    @property
    def _prefix(self) -> str:
        """application_name prefix of every connection a holder of this pipeline opens."""
        key = hashlib.sha1(f"{self.dataset}/{self.pipeline_name}".encode()).hexdigest()[:12]
        return f"flows-fence:{key}:"

    @property
    def application_name(self) -> str:
        return self._prefix + self.lease.token[:16]

    def covers(self, sql: Any) -> bool:
        """True for a sql client of this pipeline's dataset or its staging dataset."""
        names = (self.dataset, self.staging)
        return bool(sql.staging_dataset_name == self.staging and sql.dataset_name in names)

    def claim(self, conn: Any) -> int:
        """Makes this lease the pipeline's current one at the destination; its epoch."""
        retry = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(10),
            retry=tenacity.retry_if_exception_type(
                (psycopg2.errors.LockNotAvailable, psycopg2.errors.UniqueViolation)
            ),
            reraise=True,
        )
        for attempt in retry:
            with attempt:
                epoch = self._bump(conn)
        self._terminate_others(conn)  # connections opened meanwhile fail their check anyway
        return epoch

    def _bump(self, conn: Any) -> int:
        schema = self.table.rsplit(".", 1)[0]
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (pipeline_name text PRIMARY KEY, "
                "epoch bigint NOT NULL, token text NOT NULL)"
            )
        self._terminate_others(conn)
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cur.execute(
                    f"INSERT INTO {self.table} AS f (pipeline_name, epoch, token) "
                    "VALUES (%s, 1, %s) ON CONFLICT (pipeline_name) "
                    "DO UPDATE SET epoch = f.epoch + 1, token = EXCLUDED.token RETURNING epoch",
                    (self.pipeline_name, self.lease.token),
                )
                row = cur.fetchone()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.autocommit = True
        return int(row[0])

    def _terminate_others(self, conn: Any) -> None:
        """Ends every backend of an earlier holder of this pipeline: what it has not
        committed rolls back, and a frozen holder stops blocking the fence row."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid, application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s AND application_name <> %s "
                "AND pid <> pg_backend_pid()",
                (self._prefix + "%", self.application_name),
            )
            for pid, name, _ in cur.fetchall():
                log.warning("terminated backend %s of an earlier holder (%s)", pid, name)

    def check(self, sql: Any) -> None:
        """Inside the transaction about to commit: the fence row must name this lease. The
        row stays share-locked until the commit, so no bump can pass in between."""
        self.lease.check()
        with sql.native_connection.cursor() as cur:
            cur.execute(
                f"SELECT token FROM {self.table} WHERE pipeline_name = %s FOR SHARE",
                (self.pipeline_name,),
            )
            row = cur.fetchone()
        if row is None or row[0] != self.lease.token:
            error = FenceLostError(
                f"the destination fence {self.table} of {self.pipeline_name} names another "
                "holder: this run's transaction is rolled back, it must not write"
            )
            self.lease.fence(error)
            raise error


def _fence_of(sql: Any) -> Fence | None:
    return next((f for f in _fences if f.covers(sql)), None)


def _lease_of(load: Any) -> Lease | None:
    path = str(Path(dlt_internals.load_storage_path(load)).resolve())
    return _guarded.get(path)


def _wrap(method: Callable[..., Any], verify: bool) -> Callable[..., Any]:
    @functools.wraps(method)
    def fenced(self: Any, *args: Any, **kwargs: Any) -> Any:
        lease = _lease_of(self)
        if lease is not None:
            lease.verify() if verify else lease.check()
        return method(self, *args, **kwargs)

    return fenced


def _named(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a guarded holder's connections, so that its successor can terminate them."""

    @functools.wraps(method)
    def open_connection(self: Any) -> Any:
        conn = method(self)
        fence = _fence_of(self)
        if fence is not None:
            with conn.cursor() as cur:
                cur.execute("SET application_name = %s", (fence.application_name,))
        return conn

    return open_connection


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    """COMMIT only while the destination's fence names this holder's lease."""

    @functools.wraps(method)
    def commit_transaction(self: Any) -> Any:
        fence = _fence_of(self)
        if fence is not None:
            fence.check(self)
        return method(self)

    return commit_transaction


def _in_transaction(method: Callable[..., Any]) -> Callable[..., Any]:
    """dlt writes the `_dlt_loads` record in autocommit; a fenced client writes it in a
    transaction, so the fence check guards it too."""

    @functools.wraps(method)
    def complete_load(self: Any, load_id: str) -> Any:
        if _fence_of(self.sql_client) is None:
            return method(self, load_id)
        with self.sql_client.begin_transaction():
            return method(self, load_id)

    return complete_load


def install() -> None:
    """Wraps dlt's load step once per process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        dlt_internals.wrap_load_step(
            submit_job=functools.partial(_wrap, verify=False),
            complete_package=functools.partial(_wrap, verify=True),
            complete_load=_in_transaction,
            open_connection=_named,
            commit_transaction=_checked,
        )
        _installed = True


def claim_destination(pipeline: dlt.Pipeline, lease: Lease) -> Fence | None:
    """Bumps the pipeline's fence at a PostgreSQL destination (None elsewhere)."""
    if not isinstance(pipeline.destination, dlt.destinations.postgres):
        return None
    with pipeline.sql_client() as sql:
        fence = Fence(
            pipeline.pipeline_name,
            sql.dataset_name,
            sql.staging_dataset_name,
            sql.make_qualified_table_name(FENCE_TABLE),
            lease,
        )
        epoch = fence.claim(sql.native_connection)
    log.info("destination fence of %s at epoch %d", pipeline.pipeline_name, epoch)
    return fence


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
    fence: Fence | None = None
    try:
        # the store must still show this lease: a holder that lost it must not bump the fence
        # (one frozen right here is stopped by the check below, before it loads anything;
        # its successor's transactions then fail and its retry claims the fence again)
        lease.verify()
        # before the resume logic reads the destination: whatever an earlier holder has not
        # committed by now never will
        fence = claim_destination(pipeline, lease)
        if fence is not None:
            with _lock:
                _fences.append(fence)
        lease.check()
        yield
    finally:
        lease.on_fenced = previous
        with _lock:
            _guarded.pop(path, None)
            if fence is not None:
                _fences.remove(fence)
