"""One writer per pipeline: a lease object in the store, renewed by a heartbeat.

Where the store has conditional writes (S3's If-Match / If-None-Match, a file lock on a
local store) the lease is taken and renewed by compare-and-swap: a writer replaces exactly
the lease it read, or nothing. Elsewhere acquisition is write-then-confirm: a writer reads
the lease, writes its own, waits `settle` seconds and reads again; only the writer that
still sees itself proceeds. That leaves a window: a writer whose read and write lie further
apart than `settle` can overwrite a lease that was already confirmed; a run of two
processes on SeaweedFS hit it. Every snapshot checks the lease first, so a zombie that lost
it cannot publish a newer generation.

A lease may be taken over before it expires when its holder is provably gone: the same
run id (Prefect retrying the same flow run on a new pod) or a dead pid on this host.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import psutil

from flows.state.errors import LeaseHeldError, LeaseLostError, StateStoreError
from flows.state.store import StateStore


@dataclass(frozen=True)
class LeaseInfo:
    token: str
    host: str
    pid: int
    run_id: str | None
    acquired_at: float
    expires_at: float
    epoch: int

    @property
    def holder(self) -> str:
        run = f" run {self.run_id}" if self.run_id else ""
        return f"{self.host} pid {self.pid}{run}"

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) >= self.expires_at

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError) as err:
            raise StateStoreError(f"lease object is not readable: {err}") from err


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
    ) -> None:
        self.store, self.path, self.ttl = store, path, ttl
        self.run_id, self.wait, self.poll, self.settle = run_id, wait, poll, settle
        self.token = uuid.uuid4().hex
        self.info: LeaseInfo | None = None
        self._version: str | None = None  # of the lease object as this holder last wrote it
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def read(self) -> LeaseInfo | None:
        data = self.store.read_bytes(self.path)
        return LeaseInfo.from_json(data) if data else None

    def _read_versioned(self) -> tuple[LeaseInfo | None, str | None]:
        if not self.store.conditional_writes:
            return self.read(), None
        data, version = self.store.read_versioned(self.path)
        return (LeaseInfo.from_json(data) if data else None), version

    def _takeable(self, current: LeaseInfo | None) -> bool:
        if current is None or current.token == self.token or current.expired():
            return True
        if self.run_id and current.run_id == self.run_id:
            return True  # an earlier attempt of the same run: it failed or its pod is gone
        return current.host == socket.gethostname() and not psutil.pid_exists(current.pid)

    def acquire(self) -> LeaseInfo:
        deadline = time.monotonic() + self.wait
        while True:
            current, version = self._read_versioned()
            if self._takeable(current):
                mine = LeaseInfo(
                    token=self.token,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    run_id=self.run_id,
                    acquired_at=time.time(),
                    expires_at=time.time() + self.ttl,
                    epoch=(current.epoch + 1) if current else 1,
                )
                if self._write(mine, version):
                    self.info = mine
                    self._start_heartbeat()
                    return mine
                current = self.read()
            if time.monotonic() >= deadline:
                assert current is not None
                until = time.strftime("%H:%M:%S", time.gmtime(current.expires_at))
                raise LeaseHeldError(
                    f"pipeline state at {self.store.url} is locked by {current.holder} "
                    f"(lease epoch {current.epoch}, expires {until} UTC); another run of this "
                    "pipeline is in progress. Wait for it, pass --wait, or `flows state unlock` "
                    "if it is dead.",
                    holder=asdict(current),
                )
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))

    def verify(self) -> None:
        """Raises `LeaseLostError` unless the store still shows this lease."""
        if self.lost:
            raise self.lost
        current = self.read()
        if current is None or current.token != self.token:
            holder = current.holder if current else "nobody"
            self.lost = LeaseLostError(
                f"lease on {self.path} lost to {holder}: this run must not write state any more"
            )
            raise self.lost

    def _write(self, info: LeaseInfo, version: str | None) -> bool:
        """Writes `info` over the lease at `version`; False when another writer got there."""
        if self.store.conditional_writes:
            written = self.store.replace_if(self.path, info.to_json(), version)
            if written is None:
                return False
            self._version = written
            return True
        self.store.write_bytes(self.path, info.to_json())
        time.sleep(self.settle)
        confirmed = self.read()
        return confirmed is not None and confirmed.token == self.token

    def renew(self) -> None:
        self.verify()
        assert self.info is not None
        renewed = LeaseInfo(**{**asdict(self.info), "expires_at": time.time() + self.ttl})
        if not self.store.conditional_writes:
            self.store.write_bytes(self.path, renewed.to_json())
        elif not self._write(renewed, self._version):
            # a retried write may have landed with a version this holder never saw
            current, version = self._read_versioned()
            still_mine = current is not None and current.token == self.token
            if not (still_mine and self._write(renewed, version)):
                self.verify()  # names the new holder
                self.lost = LeaseLostError(f"lease on {self.path} changed while it was renewed")
                raise self.lost
        self.info = renewed

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat:
            self._heartbeat.join()
        current = self.read()
        if current is not None and current.token == self.token:
            self.store.remove([self.path])
        self.info = None

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="flows-lease", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LeaseLostError:
                return
            except StateStoreError:
                continue  # transient trouble: the next beat tries again before expiry

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
