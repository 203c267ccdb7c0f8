"""The single-writer lease on a local store: refusal, takeover rules, zombies."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from flows.state import LeaseHeldError, LeaseLostError, StateSession, open_store
from flows.state.lease import Lease
from tests.integration.helpers import assert_late_writer_cannot_clobber


def lease(tmp_path: Path, **kw: object) -> Lease:
    store = open_store(f"file://{tmp_path / 'store'}")
    return Lease(store, store.path("p", "lease.json"), settle=0, **kw)  # type: ignore[arg-type]


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


def test_retry_of_the_same_run_takes_over_at_once(tmp_path: Path) -> None:
    lease(tmp_path, run_id="flow-run-1").acquire()  # its pod died, never released
    retry = lease(tmp_path, run_id="flow-run-1")
    assert retry.acquire().epoch == 2


def test_dead_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    dead = lease(tmp_path)
    dead.acquire()
    dead._stop.set()
    raw = json.loads(Path(dead.path).read_text())
    raw["pid"] = 2**22 + 12345  # no such pid
    Path(dead.path).write_text(json.dumps(raw))
    assert lease(tmp_path).acquire().epoch == 2


def test_expired_lease_is_taken_over(tmp_path: Path) -> None:
    old = lease(tmp_path, ttl=0.2)
    old.acquire()
    old._stop.set()  # heartbeat stops: a frozen process
    time.sleep(0.3)
    assert lease(tmp_path).acquire().epoch == 2
    with pytest.raises(LeaseLostError, match="lost to"):
        old.verify()


def test_zombie_session_cannot_publish_after_takeover(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    for name in ("a", "b"):
        (tmp_path / name / "p").mkdir(parents=True)
        (tmp_path / name / "p" / "state.json").write_text(name)
    zombie = StateSession(open_store(url), "p", tmp_path / "a", lease_ttl=0.2, lease_settle=0)
    zombie.open()
    zombie.lease._stop.set()
    time.sleep(0.3)
    with StateSession(open_store(url), "p", tmp_path / "b", lease_settle=0) as winner:
        winner.snapshot("extract")
        with pytest.raises(LeaseLostError):
            zombie.snapshot("load")
    assert zombie.layout.latest_generation() == 1
    assert zombie.layout.read_manifest(1).files[0].size == 1  # the winner's "b"


def test_late_writer_cannot_clobber_a_taken_lease(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'store'}")
    assert_late_writer_cannot_clobber(store, store.path("p", "lease.json"))
