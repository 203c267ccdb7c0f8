"""The single-writer lease on a local store: refusal, takeover rules, self-fencing, repair."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from flows.state import (
    LeaseHeldError,
    LeaseLostError,
    StateSession,
    StateStoreError,
    StoreUnreachableError,
    open_store,
)
from flows.state.errors import LeaseCorruptError
from flows.state.inspect import lease_status
from flows.state.lease import FENCE_FRACTION, Lease, revoke
from flows.state.snapshot import PipelineLayout
from tests.integration.helpers import assert_late_writer_cannot_clobber


def lease(tmp_path: Path, **kw: object) -> Lease:
    store = open_store(f"file://{tmp_path / 'store'}")
    return Lease(store, store.path("p", "lease.json"), settle=0, **kw)  # type: ignore[arg-type]


class Fenced:
    """Records when and why a holder fenced itself."""

    def __init__(self, holder: Lease) -> None:
        self.at: float | None = None
        self.error: StateStoreError | None = None
        self.event = threading.Event()
        holder.on_fenced = self

    def __call__(self, error: StateStoreError) -> None:
        self.at, self.error = time.time(), error
        self.event.set()


def test_second_writer_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    first = lease(tmp_path, run_id="run-a")
    first.acquire()
    started = time.monotonic()
    with pytest.raises(LeaseHeldError, match=r"locked by .* pid \d+ run run-a") as err:
        lease(tmp_path, run_id="run-b").acquire()
    assert time.monotonic() - started < 1
    assert err.value.holder["run_id"] == "run-a"
    first.release()
    lease(tmp_path).acquire()  # free again


def test_waiting_writer_gets_the_lease_when_it_is_released(tmp_path: Path) -> None:
    first = lease(tmp_path)
    first.acquire()
    threading.Timer(0.5, first.release).start()
    second = lease(tmp_path, wait=10, poll=0.1)
    info = second.acquire()
    assert info.token == second.token


def test_waiting_writer_says_whom_it_waits_for(tmp_path: Path) -> None:
    first = lease(tmp_path, run_id="run-a")
    first.acquire()
    said: list[str] = []
    threading.Timer(1.0, first.release).start()
    lease(tmp_path, wait=10, poll=0.1, say=said.append).acquire()
    assert said and "run run-a" in said[0] and "expires" in said[0] and "UTC" in said[0]


def test_same_run_id_revokes_the_earlier_attempt_and_waits_until_it_is_fenced(
    tmp_path: Path,
) -> None:
    earlier = lease(tmp_path, run_id="flow-run-1", ttl=2.0)
    earlier.acquire()  # alive: its heartbeat renews every 0.25 s
    fenced = Fenced(earlier)
    retry = lease(tmp_path, run_id="flow-run-1", ttl=2.0, poll=0.05)
    info = retry.acquire()
    taken = time.time()
    assert info.epoch == 2
    assert fenced.event.is_set() and fenced.at is not None
    assert isinstance(fenced.error, LeaseLostError) and "revoked" in str(fenced.error)
    # the earlier attempt stopped writing well before the retry could write
    assert taken - fenced.at >= 2.0 * (1 - FENCE_FRACTION) - 0.3
    with pytest.raises(LeaseLostError):
        earlier.verify()


def test_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    dead = lease(tmp_path, run_id="flow-run-1")
    dead.acquire()
    dead._stop.set()
    raw = json.loads(Path(dead.path).read_text())
    raw["pid"] = 2**22 + 12345  # no such pid
    Path(dead.path).write_text(json.dumps(raw))
    started = time.monotonic()
    assert lease(tmp_path, run_id="flow-run-1").acquire().epoch == 2
    assert time.monotonic() - started < 1


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(tmp_path: Path) -> None:
    old = lease(tmp_path, ttl=0.4)
    old.acquire()
    old._stop.set()  # heartbeat stops: a frozen process
    time.sleep(0.5)
    assert lease(tmp_path).acquire().epoch == 2
    with pytest.raises(LeaseLostError, match="not renewed"):
        old.verify()


def test_holder_that_cannot_renew_fences_itself_before_the_lease_expires(
    tmp_path: Path,
) -> None:
    holder = lease(tmp_path, ttl=2.0)
    info = holder.acquire()
    fenced = Fenced(holder)

    def outage(*_: object) -> None:
        raise StoreUnreachableError("state store down (test outage)")

    holder._beat_store.replace_if = outage  # type: ignore[method-assign]
    assert fenced.event.wait(5)
    assert isinstance(fenced.error, StoreUnreachableError)  # exit 5, retryable
    assert fenced.at is not None and fenced.at <= info.expires_at - 2.0 * (1 - FENCE_FRACTION) + 0.3
    with pytest.raises(StoreUnreachableError):
        holder.check()
    # a renewal that succeeds later does not revive it
    holder._beat_store = holder.store
    with pytest.raises(StateStoreError):
        holder.renew()


def test_unlock_of_a_live_holder_fences_it_and_nobody_takes_over_before_expiry(
    tmp_path: Path,
) -> None:
    holder = lease(tmp_path, ttl=2.0)
    holder.acquire()
    fenced = Fenced(holder)
    revoked = revoke(holder.store, holder.path, "flows state unlock")
    assert revoked is not None and revoked.revoked_by == "flows state unlock"
    assert fenced.event.wait(2)
    # revoked but not expired: not free yet; the next run waits it out, whatever --wait says
    next_run = lease(tmp_path, poll=0.05)
    assert next_run.acquire().epoch == 2
    assert time.time() >= revoked.expires_at
    assert fenced.at is not None and fenced.at < revoked.expires_at - 0.4


def test_corrupt_lease_is_reported_and_can_be_replaced(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'store'}")
    layout = PipelineLayout(store, "p")
    store.write_bytes(layout.lease_path, b"{not json")
    status = lease_status(layout)
    assert status is not None and status.startswith("corrupt")
    with pytest.raises(LeaseCorruptError, match="unlock"):
        lease(tmp_path).acquire()
    replaced = revoke(store, layout.lease_path, "flows state unlock")
    assert replaced is not None and replaced.revoked_by
    status = lease_status(layout)
    assert status is not None and status.startswith("revoked")


def test_zombie_session_cannot_publish_after_takeover(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    for name in ("a", "b"):
        (tmp_path / name / "p").mkdir(parents=True)
        (tmp_path / name / "p" / "state.json").write_text(name)
    zombie = StateSession(open_store(url), "p", tmp_path / "a", lease_ttl=0.4, lease_settle=0)
    zombie.open()
    zombie.lease._stop.set()
    time.sleep(0.5)
    with StateSession(open_store(url), "p", tmp_path / "b", lease_settle=0) as winner:
        winner.snapshot("extract")
        with pytest.raises(LeaseLostError):
            zombie.snapshot("load")
    assert zombie.layout.latest_generation() == 1
    assert zombie.layout.read_manifest(1).files[0].size == 1  # the winner's "b"


def test_late_writer_cannot_clobber_a_taken_lease(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'store'}")
    assert_late_writer_cannot_clobber(store, store.path("p", "lease.json"))
