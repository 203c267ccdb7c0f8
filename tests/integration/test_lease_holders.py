"""Who may take a lease, with real holder processes against real SeaweedFS: a holder in
another PID namespace on the same hostname, and holders or waiters whose wall clock is
wrong (tests/integration/lease_holder.py skews `time.time()` in one process only).

Expiry is judged by the waiter's own monotonic clock (the lease object unchanged for one
TTL), never by comparing one machine's wall clock with another's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flows.state import LeaseHeldError, open_store
from flows.state.lease import Lease, read_lease
from flows.state.snapshot import PipelineLayout
from tests.integration.helpers import run_cli

HOLDER = Path(__file__).with_name("lease_holder.py")
TTL = 4.0  # renewals every 0.5 s, self-fence 3 s after the last one
PIPELINE = "held"


class Holders:
    """Starts lease_holder.py processes and kills whatever is left of them at the end."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url, self.tmp_path = url, tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def start(
        self, skew: float = 0.0, wait: float = 0.0, prefix: tuple[str, ...] = ()
    ) -> tuple[subprocess.Popen[str], Path]:
        marker = self.tmp_path / f"holder-{len(self.procs)}.json"
        args = [self.url, PIPELINE, str(TTL), str(marker), str(skew), str(wait)]
        proc = subprocess.Popen(
            [*prefix, sys.executable, str(HOLDER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: killed as a whole
        )
        self.procs.append(proc)
        return proc, marker

    def held(self, skew: float = 0.0, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
        """A holder that has taken the lease (the lease must be free)."""
        proc, marker = self.start(skew, prefix=prefix)
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"holder ended: {proc.communicate()[1][-2000:]}")
            assert time.monotonic() < deadline, "the holder never took the lease"
            time.sleep(0.05)
        return proc

    def kill(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)


@pytest.fixture
def holders(flows_env: dict[str, str], bucket: str, tmp_path: Path) -> Iterator[Holders]:
    running = Holders(f"s3://{bucket}/state", tmp_path)
    try:
        yield running
    finally:
        running.close()


def in_own_pid_namespace(hostname: str | None = None) -> tuple[str, ...]:
    """A command prefix: run in a new PID namespace (as in another container) where the
    holder's pid is 300001, a pid that cannot exist here (pid_max is lower); with
    `hostname`, also in a UTS namespace of its own: another machine, as far as a lease can
    tell."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to start a holder in its own PID namespace"
    assert os.geteuid() == 0, "a new PID namespace needs root (unshare --pid)"
    rename = f"hostname {hostname} && " if hostname else ""
    return (
        unshare, "--pid", "--fork", "--mount-proc", *(["--uts"] if hostname else []),
        "sh", "-c", rename + 'echo 300000 > /proc/sys/kernel/ns_last_pid && "$0" "$@"',
    )  # fmt: skip


def waiter(url: str, wait: float = 0.0) -> Lease:
    store = open_store(url)
    return Lease(store, PipelineLayout(store, PIPELINE).lease_path, ttl=TTL, wait=wait, poll=0.1)


def test_holder_in_another_pid_namespace_on_the_same_hostname_is_waited_for(
    holders: Holders,
) -> None:
    prefix = in_own_pid_namespace()
    holder = holders.held(prefix=prefix)
    store = open_store(holders.url)
    info = read_lease(store, PipelineLayout(store, PIPELINE).lease_path)
    assert info is not None and info.host == socket.gethostname()
    assert not psutil.pid_exists(info.pid), "the holder's pid must not be visible here"
    # a run that does not wait is refused at once, naming the live holder
    started = time.monotonic()
    with pytest.raises(LeaseHeldError, match=f"locked by {socket.gethostname()} pid {info.pid}"):
        waiter(holders.url).acquire()
    assert time.monotonic() - started < 2
    # a run that waits longer than the TTL still does not take it while the holder lives
    with pytest.raises(LeaseHeldError):
        waiter(holders.url, wait=2 * TTL).acquire()
    assert holder.poll() is None, "the holder was never disturbed"
    # once it is gone, the lease is taken after it stayed unchanged for one TTL
    holders.kill(holder)
    started = time.monotonic()
    successor = waiter(holders.url, wait=3 * TTL)
    taken = successor.acquire()
    successor.release()
    assert taken.epoch == info.epoch + 1
    assert TTL <= time.monotonic() - started < 2 * TTL


def wait_for_marker(proc: subprocess.Popen[str], marker: Path, timeout: float) -> float:
    """Seconds until `proc` took the lease; fails when it ended or took longer."""
    started = time.monotonic()
    while not marker.exists():
        assert proc.poll() is None, f"it ended ({proc.returncode}): {proc.communicate()[1][-2000:]}"
        assert time.monotonic() - started < timeout, f"it did not take the lease in {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("holder_skew", "taker_skew"),
    [(0.0, 180.0), (-180.0, 0.0)],
    ids=["taker-180s-ahead", "holder-180s-behind"],
)
def test_a_skewed_clock_cannot_take_a_live_lease(
    holders: Holders, holder_skew: float, taker_skew: float
) -> None:
    holder = holders.held(skew=holder_skew)
    taker, marker = holders.start(skew=taker_skew, wait=0)
    # it watches the lease (its holder's clock says it ran out), sees it renewed, gives up
    assert taker.wait(timeout=3 * TTL) == 3, taker.communicate()[1][-2000:]
    assert "locked by" in taker.communicate()[1]
    assert not marker.exists()
    assert holder.poll() is None, "the live holder kept its lease"


def test_a_holder_600_s_ahead_locks_reruns_out_for_one_ttl_at_most(holders: Holders) -> None:
    holder = holders.held(skew=600, prefix=in_own_pid_namespace("another-node"))
    holders.kill(holder)
    started = time.monotonic()
    rerun = waiter(holders.url)  # does not even pass --wait
    taken = rerun.acquire()
    rerun.release()
    assert taken.epoch == 2
    assert TTL <= time.monotonic() - started < 1.5 * TTL


def test_unlock_stops_a_skewed_live_holder_and_the_next_run_proceeds_within_one_ttl(
    holders: Holders, flows_env: dict[str, str]
) -> None:
    holder = holders.held(skew=600, prefix=in_own_pid_namespace("another-node"))
    args = ["state", "unlock", PIPELINE, "--state-url", holders.url, "--yes"]
    unlock = run_cli(args, flows_env)
    assert unlock.code == 0 and "revoked" in unlock.stdout, unlock.stderr
    # the holder fences itself at its next renewal
    assert holder.wait(timeout=TTL) == 3
    assert "revoked" in holder.communicate()[1]
    shown = run_cli(["state", "show", PIPELINE, "--state-url", holders.url], flows_env)
    assert "revoked by flows state unlock" in shown.stdout, shown.stdout
    nxt, marker = holders.start(wait=0)
    assert TTL * 0.9 <= wait_for_marker(nxt, marker, timeout=2 * TTL) < 1.5 * TTL


def test_drop_never_deletes_the_state_of_a_live_holder_whose_clock_is_behind(
    holders: Holders, flows_env: dict[str, str]
) -> None:
    """The holder's clock is 600 s behind, so its lease says it expired long ago: `state
    drop` must still see that it is renewed, refuse (exit 3) and delete nothing."""
    holder = holders.held(skew=-600)
    layout = PipelineLayout(open_store(holders.url), PIPELINE)
    layout.store.write_bytes(layout.path("manifests", "000000000001.json"), b"{}")
    env = {**flows_env, "STATE__LEASE_TTL": str(TTL)}
    dropped = run_cli(["state", "drop", PIPELINE, "--state-url", holders.url, "--yes"], env)
    assert dropped.code == 3, dropped.stderr[-2000:]
    assert layout.generations() == [1]
    assert holder.poll() is None, "the live holder kept its lease"
    holders.kill(holder)
    # once the holder is gone (its lease unchanged for one TTL) the drop goes through
    dropped = run_cli(["state", "drop", PIPELINE, "--state-url", holders.url, "--yes"], env)
    assert dropped.code == 0, dropped.stderr[-2000:]
    assert layout.generations() == [] and read_lease(layout.store, layout.lease_path) is None
