"""One writer per pipeline: a lease object in the store, renewed by a heartbeat, self-fenced.

The protocol (docs/fencing.md):

- **Taking.** Where the store has conditional writes (S3's If-Match / If-None-Match, a file
  lock on a local store) the lease is taken and renewed by compare-and-swap: a writer
  replaces exactly the lease object it read, or nothing. Elsewhere a writer writes, waits
  `settle` seconds and reads again (a window docs/fencing.md states).
- **Renewing.** The holder renews every `ttl / 8`; every renewal changes the lease object
  (its version). `expires_at` (the holder's wall clock plus `ttl`) is shown to people, and
  no decision depends on it: a writer's clock may be wrong.
- **Self-fencing.** The holder may write (snapshots, the destination) only until `ttl * 3/4`
  after the start of its last confirmed renewal. A watchdog thread that never touches the
  network enforces that deadline; the `on_fenced` callback then stops the writer (during a
  load the process exits at once, see flows/durable/fencing.py). A renewal that finds the lease
  revoked or taken fences at once.
- **Expiry** is judged by the waiter alone, as Kubernetes' leader election does: a lease has
  expired once the waiter has seen the same version of the lease object, unchanged, for the
  holder's `ttl` by the waiter's own monotonic clock. Wall clocks are never compared, so a
  skewed clock, the holder's or the waiter's, can neither take a live lease nor lock a dead
  one in. A waiter with a short `wait` still watches a lease that claims to have expired, or
  claims an impossible expiry (a clock ahead), for one `ttl`: it takes it if it stays
  unchanged, and gives up as soon as it changes (its holder is alive).
- **Taking over.** Before it expires, a lease is taken over only when its holder is provably
  gone: a process of the same boot (`/proc/sys/kernel/random/boot_id`) and the same PID
  namespace whose pid no longer exists or belongs to a process with another start time. A
  hostname and a pid alone prove nothing: pods with `hostNetwork` share the node's hostname
  and each has its own pids. Any other holder, the same run id included (an earlier attempt
  of one flow run may still be alive on a pod being evicted), is first *revoked* (the record
  is marked, so its next renewal fails and it fences itself) and then waited out. A holder
  therefore stops at least `ttl / 4` before anyone else may write (by the two monotonic
  clocks, which may differ in rate, not in reading). A holder frozen for longer than that
  wakes fenced, but a commit it had in flight is only stopped by the destination
  (flows/durable/fencing.py).
- **Unlocking** (`flows state unlock`) revokes too: a live holder stops, and the next run
  proceeds once it has seen the revoked lease unchanged for one `ttl`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace

from flows.state.errors import (
    LeaseCorruptError,
    LeaseHeldError,
    LeaseLostError,
    StateStoreError,
    StoreUnreachableError,
)
from flows.state.holder import LeaseInfo, this_process
from flows.state.store import RetrySettings, StateStore

__all__ = ["FENCE_FRACTION", "RENEW_FRACTION", "Lease", "LeaseInfo", "read_lease", "revoke"]

log = logging.getLogger(__name__)

RENEW_FRACTION = 1 / 8  # of the TTL between renewals
FENCE_FRACTION = 3 / 4  # of the TTL after a renewal started: the holder stops writing
PROGRESS_EVERY = 5.0  # seconds between "waiting for the lease" messages


def _utc(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + " UTC"


def read_lease(store: StateStore, path: str) -> LeaseInfo | None:
    data = store.read_bytes(path)
    return LeaseInfo.from_json(data, store.url_for(path)) if data is not None else None


def revoke(store: StateStore, path: str, by: str, ttl: float = 120.0) -> LeaseInfo | None:
    """Marks the lease revoked so that its holder fences itself at its next renewal; a corrupt
    lease is replaced by a revoked one that expires `ttl` from now (its writer, if alive,
    fences itself within that time: its renewal cannot match what it finds).

    Nobody may take the lease before it expires: revoking never makes it free at once.
    """
    for _ in range(10):
        data, version = _read_raw(store, path)
        if data is None:
            return None
        try:
            current = LeaseInfo.from_json(data)
            revoked = replace(current, revoked_by=by)
        except LeaseCorruptError:
            revoked = LeaseInfo("corrupt", "?", 0, None, 0.0, time.time() + ttl, 0, by, ttl=ttl)
        if _write(store, path, revoked, version):
            return revoked
    raise LeaseHeldError(f"lease {store.url_for(path)} kept changing; try again", holder={})


def _read_raw(store: StateStore, path: str) -> tuple[bytes | None, str | None]:
    if not store.conditional_writes:
        return store.read_bytes(path), None
    return store.read_versioned(path)


def _write(
    store: StateStore, path: str, info: LeaseInfo, version: str | None, settle: float = 0.5
) -> str | None:
    """Writes `info` over the lease at `version`; the new version, or None when another writer
    got there first. Without conditional writes: write, wait `settle`, read back."""
    if store.conditional_writes:
        return store.replace_if(path, info.to_json(), version)
    store.write_bytes(path, info.to_json())
    time.sleep(settle)
    confirmed = store.read_bytes(path)
    return "confirmed" if confirmed == info.to_json() else None


class _Watch:
    """How long a waiter has seen one version of the lease object unchanged, by its own
    monotonic clock (client-go's `observedTime`), and whether it saw the holder renew."""

    def __init__(self) -> None:
        self.seen: tuple[str | None, LeaseInfo] | None = None
        self.since = time.monotonic()
        self.changes = 0
        self.alive = False

    def see(self, version: str | None, current: LeaseInfo) -> None:
        if (version, current) == self.seen:
            return
        if self.seen is not None:
            self.changes += 1
            self.alive = self.alive or not current.revoked_by
        self.seen, self.since = (version, current), time.monotonic()

    def forget(self) -> None:
        """The next version seen starts a new watch without counting as a renewal."""
        self.seen = None

    def unchanged_for(self) -> float:
        return time.monotonic() - self.since


def _implausible(current: LeaseInfo, ttl: float) -> bool:
    """The holder's clock says the lease ran out, or runs out later than a renewal can set:
    a dead holder or a clock that is wrong here or there; only watching it tells which."""
    now = time.time()
    return not now < current.expires_at <= now + ttl * 1.05


class Lease:
    """The lease on one pipeline's state. Use as a context manager."""

    def __init__(
        self,
        store: StateStore,
        path: str,
        ttl: float = 120.0,
        run_id: str | None = None,
        wait: float = 0.0,
        poll: float = 2.0,
        settle: float = 0.5,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.path, self.ttl = store, path, ttl
        self.run_id, self.wait, self.poll, self.settle = run_id, wait, poll, settle
        self.say = say or log.warning
        self.token = uuid.uuid4().hex
        self.info: LeaseInfo | None = None
        self._version: str | None = None  # of the lease object as this holder last wrote it
        self.lost: StateStoreError | None = None
        self.took_over = False  # this holder took the lease over from another one
        # called once, from the watchdog or heartbeat thread, when this holder must stop
        self.on_fenced: Callable[[StateStoreError], None] | None = None
        self._valid_until = 0.0  # monotonic: the self-fence deadline
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fence_lock = threading.Lock()
        self._last_renew_error: BaseException | None = None
        # the heartbeat gives up on one renewal well before the deadline
        self._beat_store = store.with_retry(
            RetrySettings(
                attempts=3,
                initial_wait=min(1.0, ttl / 40),
                max_wait=min(4.0, ttl / 16),
                window=ttl * RENEW_FRACTION,
            )
        )

    @property
    def url(self) -> str:
        return self.store.url_for(self.path)

    def read(self) -> LeaseInfo | None:
        return read_lease(self.store, self.path)

    def _read_versioned(self) -> tuple[LeaseInfo | None, str | None]:
        data, version = _read_raw(self.store, self.path)
        return (LeaseInfo.from_json(data, self.url) if data is not None else None), version

    # taking ---------------------------------------------------------------------------------

    def acquire(self) -> LeaseInfo:
        deadline = time.monotonic() + self.wait
        next_message = 0.0
        watch = _Watch()
        while True:
            current, version = self._read_versioned()
            if current is None or current.token == self.token or current.provably_gone():
                if self._take(current, version):
                    assert self.info is not None
                    return self.info
                continue  # another writer changed it: judge again
            ttl = current.ttl or self.ttl
            watch.see(version, current)
            if watch.unchanged_for() >= ttl:
                if self._take(current, version):  # expired by the waiter's own clock
                    assert self.info is not None
                    return self.info
                continue
            if self.run_id and current.run_id == self.run_id and not current.revoked_by:
                # an earlier attempt of this run, maybe alive on a pod being replaced: make
                # it fence itself, then wait until its lease has run out
                revoke(self.store, self.path, f"run {self.run_id} attempt on {self._me()}")
                watch.forget()  # the change is ours, not a sign of life
                self.say(
                    f"lease of {current.holder} (an earlier attempt of this run) revoked; "
                    f"it stops at its next renewal, waiting until it stays unchanged for "
                    f"{ttl:g} s"
                )
                next_message = time.monotonic() + PROGRESS_EVERY
                continue
            if current.revoked_by or (_implausible(current, ttl) and not watch.alive):
                # revoked leases, and leases whose holder's clock says they ran out, are
                # watched for one ttl whatever `wait` says: they end by themselves unless
                # their holder renews (a live holder with a wrong clock)
                deadline = max(deadline, watch.since + ttl + self.poll)
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"pipeline state at {self.store.url} is locked by {current.holder} "
                    f"(lease epoch {current.epoch}, renewed {watch.changes} times while this "
                    "run waited); another run of this pipeline is in progress. Wait for it, "
                    "pass --wait, or `flows state unlock` if it is dead.",
                    holder=asdict(current),
                )
            if time.monotonic() >= next_message:
                state = f", revoked by {current.revoked_by}" if current.revoked_by else ""
                free_at = time.time() + watch.since + ttl - time.monotonic()
                self.say(
                    f"waiting for the lease on {self.url}: held by {current.holder}{state}, "
                    f"expires {_utc(free_at)} unless renewed, giving up at "
                    f"{_utc(time.time() + deadline - time.monotonic())}"
                )
                next_message = time.monotonic() + PROGRESS_EVERY
            time.sleep(max(0.05, min(self.poll, deadline - time.monotonic())))

    def _me(self) -> str:
        return f"{socket.gethostname()} pid {os.getpid()}"

    def _take(self, current: LeaseInfo | None, version: str | None) -> bool:
        started = time.monotonic()
        me = this_process()
        mine = LeaseInfo(
            token=self.token,
            host=me["host"],
            pid=me["pid"],
            run_id=self.run_id,
            acquired_at=time.time(),
            expires_at=time.time() + self.ttl,
            epoch=(current.epoch + 1) if current else 1,
            boot_id=me["boot_id"],
            pid_ns=me["pid_ns"],
            started=me["started"],
            pod=me["pod"],
            ttl=self.ttl,
        )
        written = _write(self.store, self.path, mine, version, self.settle)
        if written is None:
            return False
        self.info, self._version, self.lost = mine, written, None
        # a lease left by another holder (a released one is removed): a takeover
        self.took_over = current is not None and current.token != self.token
        self._valid_until = started + self.ttl * FENCE_FRACTION
        self._start_threads()
        return True

    # holding --------------------------------------------------------------------------------

    def check(self) -> None:
        """Raises unless this holder is still inside its self-fence deadline (no I/O)."""
        if self.lost:
            raise self.lost
        if self.info is None:
            raise LeaseLostError(f"lease {self.url} is not held by this run")
        if time.monotonic() >= self._valid_until:
            self.fence(self._deadline_error())
            assert self.lost is not None
            raise self.lost

    def _deadline_error(self) -> StateStoreError:
        """Why the deadline passed: an unreachable store (exit 5) or a lost lease (exit 3)."""
        cause = self._last_renew_error
        what = f"lease {self.url} not renewed for {self.ttl * FENCE_FRACTION:.0f} s"
        if isinstance(cause, StoreUnreachableError):
            return StoreUnreachableError(
                f"{what} ({cause}): this run stops writing before anyone else may take it"
            )
        return LeaseLostError(f"{what}: this run stops writing before anyone else may take it")

    def verify(self) -> None:
        """Raises unless the store still shows this lease, unrevoked, within its deadline."""
        self.check()
        current = self.read()
        if current is None or current.token != self.token or current.revoked_by:
            if current is None:
                why = "was removed"
            elif current.token != self.token:
                why = f"was taken by {current.holder}"
            else:
                why = f"was revoked by {current.revoked_by}"
            self.fence(LeaseLostError(f"lease {self.url} {why}: this run must not write"))
            assert self.lost is not None
            raise self.lost

    def renew(self, store: StateStore | None = None) -> None:
        store = store or self.store
        self.check()
        assert self.info is not None
        started = time.monotonic()
        renewed = replace(self.info, expires_at=time.time() + self.ttl)
        written = _write(store, self.path, renewed, self._version, self.settle)
        if written is None and store.conditional_writes:
            # a retried write may have landed with a version this holder never saw
            data, version = _read_raw(store, self.path)
            current = LeaseInfo.from_json(data, self.url) if data is not None else None
            if current is not None and current.token == self.token and not current.revoked_by:
                written = _write(store, self.path, renewed, version, self.settle)
        if written is None:
            self.verify()  # names who took or revoked it
            self.fence(LeaseLostError(f"lease {self.url} changed while it was renewed"))
            assert self.lost is not None
            raise self.lost
        with self._fence_lock:
            if self.lost:  # fenced while the renewal was in flight: stays fenced
                raise self.lost
            self.info, self._version = renewed, written
            self._valid_until = started + self.ttl * FENCE_FRACTION

    def fence(self, error: StateStoreError) -> None:
        """Stops this holder for good: `on_fenced` runs once, later renewals cannot revive it."""
        with self._fence_lock:
            if self.lost:
                return
            self.lost = error
        log.error("%s", error)
        if self.on_fenced is not None:
            self.on_fenced(error)

    def release(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads = []
        if self.info is not None and not self.lost:
            try:
                current = self.read()
            except LeaseCorruptError:
                current = None
            if current is not None and current.token == self.token:
                self.store.remove([self.path])
        self.info = None

    def _start_threads(self) -> None:
        self._stop.clear()
        for target, name in ((self._beat, "flows-lease"), (self._watch, "flows-lease-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _beat(self) -> None:
        last_error: BaseException | None = None
        while not self._stop.wait(self.ttl * RENEW_FRACTION) and not self.lost:
            try:
                self.renew(self._beat_store)
                last_error = None
            except LeaseLostError:
                return
            except StateStoreError as err:  # transient: the next beat tries again
                if last_error is None:
                    log.warning("lease renewal failed, retrying: %s", err)
                last_error = self._last_renew_error = err

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.ttl / 40)) and not self.lost:
            if time.monotonic() >= self._valid_until:
                self.fence(self._deadline_error())
                return

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
