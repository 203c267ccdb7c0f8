"""The pod engine's flow-run heartbeats (flows/prefect/heartbeats.py): Prefect's events at
Prefect's interval, from a thread that ends as soon as its run does.

The engine here is a stand-in with the four members `send_heartbeats` uses of Prefect's
`FlowRunEngine`; that a real engine in a real pod beats with them is
`tests/integration/test_prefect.py::test_a_running_flow_run_whose_pod_vanished_is_crashed_and_rerun`
(its live run stays Running only while heartbeats keep arriving)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prefect
import prefect.flow_engine
import pytest
from prefect.states import Completed, Running

from flows.prefect import heartbeats
from flows.prefect.heartbeats import VERIFIED, install, send_heartbeats

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


@dataclass
class Engine:
    """What `send_heartbeats` reads of Prefect's flow engine; records each heartbeat."""

    heartbeat_seconds: int | None
    flow_run: Any = None
    beats: list[float] = field(default_factory=list)
    beaten: threading.Event = field(default_factory=threading.Event)

    def _build_heartbeat_event_template(self) -> tuple[dict[str, str], list[Any]]:
        return {"prefect.resource.id": "prefect.flow-run.test"}, []

    def _emit_flow_run_heartbeat(self, resource: dict[str, str], related: list[Any]) -> None:
        assert resource == {"prefect.resource.id": "prefect.flow-run.test"}
        self.beats.append(time.monotonic())
        self.beaten.set()


@dataclass
class FlowRun:
    state: Any


def _beating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flows-heartbeat"]


def test_a_run_beats_at_once_and_its_thread_ends_with_the_run() -> None:
    """Prefect's thread sleeps in one-second steps, so its engine waits up to a second after
    the run ends (with Prefect's `_send_heartbeats` in place of ours this test fails: about
    1 s, the run having ended right after its first heartbeat)."""
    engine = Engine(heartbeat_seconds=3600, flow_run=FlowRun(Running()))
    with send_heartbeats(engine):
        assert engine.beaten.wait(10), "no heartbeat as the run began"
        ended = time.monotonic()
    assert time.monotonic() - ended < 0.5
    assert not _beating_threads()
    assert len(engine.beats) == 1  # the next one is an hour away


def test_beats_follow_the_interval_until_the_run_is_final() -> None:
    engine = Engine(heartbeat_seconds=1, flow_run=FlowRun(Running()))
    with send_heartbeats(engine):
        deadline = time.monotonic() + 10
        while len(engine.beats) < 3:
            assert time.monotonic() < deadline, engine.beats
            time.sleep(0.05)
        engine.flow_run.state = Completed()
        count = len(engine.beats)
        time.sleep(2.5)  # two more intervals: a final run sends none
        assert len(engine.beats) <= count + 1  # one may have been on its way
        assert not _beating_threads()
    gaps = [b - a for a, b in zip(engine.beats, engine.beats[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps), gaps


def test_no_interval_no_thread() -> None:
    engine = Engine(heartbeat_seconds=None, flow_run=FlowRun(Running()))
    with send_heartbeats(engine):
        assert not _beating_threads()
    assert engine.beats == []


def test_install_replaces_prefects_heartbeats_only_on_a_verified_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefects = prefect.flow_engine._send_heartbeats
    monkeypatch.setattr(prefect.flow_engine, "_send_heartbeats", prefects)  # restored after
    monkeypatch.setattr(prefect, "__version__", "3.999.0")
    assert install() is False
    assert prefect.flow_engine._send_heartbeats is prefects
    monkeypatch.setattr(prefect, "__version__", sorted(VERIFIED)[0])
    assert install() is True
    assert prefect.flow_engine._send_heartbeats is heartbeats.send_heartbeats


def test_the_locked_prefect_is_verified() -> None:
    """An upgrade of Prefect fails here until its engine's heartbeats are checked again:
    another version keeps Prefect's own, and its pods wait for that thread again."""
    locked = re.search(r"^prefect==(\S+)", LOCK.read_text(), re.MULTILINE)
    assert locked is not None
    assert locked.group(1) in VERIFIED
    assert prefect.__version__ in VERIFIED
