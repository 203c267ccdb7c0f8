"""Who holds a lease: the lease object's record (`LeaseInfo`) and the identity of a holder
process, unique per process lifetime (boot, PID namespace, start time), by which a waiter
tells a holder that is provably gone from one that may still write (flows/state/lease.py).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import psutil

from flows.state.errors import LeaseCorruptError


def boot_id() -> str | None:
    """This boot of the machine: pids of another boot (or another machine) say nothing here."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def pid_namespace() -> int | None:
    """The inode of this process's PID namespace: pids mean something only within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def start_time(pid: int) -> float | None:
    """When process `pid` started (None when there is none): a reused pid starts later."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # exists but cannot be read: not proof of anything
        return -1.0


@dataclass(frozen=True)
class LeaseInfo:
    token: str
    host: str
    pid: int
    run_id: str | None
    acquired_at: float
    expires_at: float
    epoch: int
    revoked_by: str | None = None
    # who holds it, unique per process lifetime (older leases lack these: never "gone")
    boot_id: str | None = None
    pid_ns: int | None = None
    started: float | None = None
    pod: str | None = None
    ttl: float | None = None  # the holder's: how long a waiter watches it unchanged

    @property
    def holder(self) -> str:
        run = f" run {self.run_id}" if self.run_id else ""
        pod = f" pod {self.pod}" if self.pod else ""
        return f"{self.host} pid {self.pid}{pod}{run}"

    def expired(self, now: float | None = None) -> bool:
        """What the holder's clock claims; for people only, never for taking a lease."""
        return (now or time.time()) >= self.expires_at

    def provably_gone(self) -> bool:
        """True only when the holder was a process of this boot and PID namespace that no
        longer runs: its pid is free or belongs to a process started at another time."""
        if self.boot_id is None or self.pid_ns is None or self.started is None:
            return False
        if (self.boot_id, self.pid_ns) != (boot_id(), pid_namespace()):
            return False
        started = start_time(self.pid)
        return started is None or (started >= 0 and abs(started - self.started) > 0.05)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str = "lease") -> LeaseInfo:
        try:
            raw = json.loads(data)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError, AttributeError) as err:
            raise LeaseCorruptError(
                f"lease object {where} is corrupt ({type(err).__name__}: {err}); "
                "`flows state unlock --yes` replaces it"
            ) from err


def this_process() -> dict[str, Any]:
    """The identity fields of a lease taken by this process (`LeaseInfo`'s host, pid,
    boot_id, pid_ns, started and pod)."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": boot_id(),
        "pid_ns": pid_namespace(),
        "started": start_time(os.getpid()),
        "pod": os.environ.get("POD_NAME"),
    }
