"""The isolated attempt's process (flows/attempt/start.py, child.py): it runs the pipeline
without calling Prefect and reports artifacts and its outcome to the parent as messages.

Forked (Linux) or spawned, the child must report the same way; the forked one must also
leave behind what belongs to the engine it was forked from: log handlers, signal handlers,
the engine's stdout."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dlt.sources import DltSource

from flows.attempt.request import Attempt
from flows.attempt.start import (
    AttemptProcess,
    discard_prewarmed,
    handover,
    prewarm,
    start_attempt,
)
from flows.pipelines import PipelineSpec
from flows.sources.synthetic import synthetic

NOISY = "tests.integration.test_attempt_child:noisy_source"


def noisy_source(rows: int, pause: float = 0.0, until: str | None = None) -> DltSource:
    """Says which process builds it, in a print and a log record, then maybe waits (`pause`
    seconds, or until the file `until` exists)."""
    name = Path("/proc/self/comm").read_text().strip() if sys.platform == "linux" else "-"
    print(f"source built in pid {os.getpid()} named {name}", flush=True)
    logging.getLogger("flows.test").info("logged by pid %d", os.getpid())
    time.sleep(pause)
    deadline = time.monotonic() + 300
    while until is not None and not Path(until).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return synthetic(rows=rows)


def _attempt(tmp_path: Path, **kwargs: Any) -> Attempt:
    return Attempt(
        "synthetic",
        NOISY,
        kwargs=kwargs,
        state_url=f"file://{tmp_path / 'state'}",
        flow_run_id="00000000-0000-0000-0000-000000000001",
    )


class Output:
    """The child's two streams, read to the end in threads like the parent does."""

    def __init__(self, proc: AttemptProcess) -> None:
        self.messages: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(proc.stdout, self.messages, json.loads)),
            threading.Thread(target=self._read, args=(proc.stderr, self.logs, str.rstrip)),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: Any, into: list[Any], parse: Any) -> None:
        for raw in stream:
            into.append(parse(raw.decode()))

    def join(self, timeout: float = 60) -> bool:
        """Whether both streams ended within `timeout` seconds."""
        for thread in self._threads:
            thread.join(timeout=timeout)
        return not any(thread.is_alive() for thread in self._threads)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("FLOWS_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_reports_artifacts_logs_and_outcome(tmp_path: Path, home: Path, method: str) -> None:
    proc = start_attempt(_attempt(tmp_path, rows=1500), method)
    out = Output(proc)
    assert proc.wait() == 0, out.logs[-20:]
    out.join()

    ops = [m["op"] for m in out.messages]
    assert ops[-1] == "report" and ops.count("report") == 1
    assert out.messages[-1]["report"]["loaded_rows"]["events"] == 1500
    keys = {m["key"] for m in out.messages if m["op"] == "create"}
    assert {"synthetic-extract-progress", "synthetic-load-summary", "synthetic-report"} <= keys
    created = {m["handle"] for m in out.messages if m["op"] == "create"}
    assert {m["handle"] for m in out.messages if m["op"] == "update"} <= created
    # a print and a log record of the source reach the log stream, not the message channel
    child = next(line for line in out.logs if line.startswith("source built in pid"))
    assert f"logged by pid {child.split()[4]}" in "\n".join(out.logs)
    assert child.endswith("named flows-attempt")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_attempts_started_at_once_each_end_on_their_own(
    tmp_path: Path, home: Path, method: str
) -> None:
    """Two tasks of one flow run at the same time: each child's streams end when that child
    ends, so neither parent waits on a pipe the other child inherited."""

    release = tmp_path / "release-the-slow-one"

    def attempt(name: str, until: Path | None) -> Attempt:
        spec = PipelineSpec(name, NOISY, dataset_name=name, destination="duckdb")
        kwargs = {"rows": 300, "until": str(until) if until else None}
        return Attempt(name, None, kwargs=kwargs, state_url=f"file://{tmp_path / name}", spec=spec)

    procs: dict[str, AttemptProcess] = {}
    started = threading.Barrier(3)
    done = threading.Event()

    def task(name: str, until: Path | None) -> None:
        """A task's thread: it outlives its child, as the kernel's parent-death signal
        (PR_SET_PDEATHSIG) follows the thread that started the child."""
        procs[name] = start_attempt(attempt(name, until), method)
        started.wait()
        done.wait(timeout=300)

    threads = [
        threading.Thread(target=task, args=(n, u)) for n, u in (("quick", None), ("slow", release))
    ]
    for thread in threads:
        thread.start()
    started.wait()
    outputs = {name: Output(proc) for name, proc in procs.items()}
    try:
        assert procs["quick"].wait() == 0, outputs["quick"].logs[-20:]
        # EOF on its pipes while the slow child still waits for the release file
        assert outputs["quick"].join(timeout=30) and procs["slow"].poll() is None
    finally:
        release.touch()
    assert outputs["quick"].messages[-1]["report"]["loaded_rows"]["events"] == 300
    assert procs["slow"].wait() == 0, outputs["slow"].logs[-20:]
    outputs["slow"].join()
    assert outputs["slow"].messages[-1]["report"]["loaded_rows"]["events"] == 300
    done.set()
    for thread in threads:
        thread.join()


def test_forked_child_leaves_the_engines_handlers_behind(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine's log handler (Prefect's sends records to the API) and its SIGTERM handler
    (Prefect's reschedules the run) must not act for the child."""
    seen = tmp_path / "seen-by-engine-handlers"

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with seen.open("a") as f:
                f.write(f"log {os.getpid()} {record.getMessage()}\n")

    def on_term(signum: int, frame: Any) -> None:
        with seen.open("a") as f:
            f.write(f"sigterm {os.getpid()}\n")

    recorder = Recorder()
    for name in ("", "flows", "flows.test"):
        logging.getLogger(name).addHandler(recorder)
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        logging.getLogger("flows.test").warning("engine's own record")
        proc = start_attempt(_attempt(tmp_path, rows=100, pause=60.0), "fork")
        out = Output(proc)
        deadline = time.monotonic() + 60
        while not any("logged by pid" in line for line in out.logs):
            assert time.monotonic() < deadline and proc.poll() is None, out.logs[-20:]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait() == -signal.SIGTERM
        out.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for name in ("", "flows", "flows.test"):
            logging.getLogger(name).removeHandler(recorder)

    lines = seen.read_text().splitlines()
    assert all(line.split()[1] == str(os.getpid()) for line in lines), lines
    assert any("engine's own record" in line for line in lines)  # the recorder works
    assert not any(line.startswith("sigterm") for line in lines)


def test_spawned_child_never_imports_prefect(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.attempt.child"],
        input=handover(_attempt(tmp_path, rows=200)),
        capture_output=True,
        env={**os.environ, "FLOWS_HOME": str(tmp_path / "home")},
        timeout=300,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if "|" in line}
    assert "dlt" in imported
    assert not {m for m in imported if m == "prefect" or m.startswith("prefect.")}
    assert json.loads(proc.stdout.decode().splitlines()[-1])["op"] == "report"


PROJECT_SOURCE = """
import os
from flows.sources.synthetic import synthetic

def events(rows):
    print(f"built in {os.getcwd()}", flush=True)
    return synthetic(rows=rows)
"""


def _spawned_children() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children()
        if child.cmdline()[1:] == ["-m", "flows.attempt.child"]
    ]


def test_prewarmed_child_takes_the_attempt_in_the_engines_directory(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's engine starts its first attempt's interpreter before a deployment's pull
    step moves it to the project: what the child imports while it waits reads no config,
    so once it moves it finds the pipeline the project declares and imports its source."""
    started, project = tmp_path / "started", tmp_path / "project"
    started.mkdir()
    (project / ".dlt").mkdir(parents=True)
    (project / "warm_project.py").write_text(PROJECT_SOURCE)
    (project / ".dlt" / "config.toml").write_text(
        '[pipelines.warm_events]\nsource = "warm_project:events"\n'
        "[pipelines.warm_events.options]\nrows = 300\n"
    )
    monkeypatch.chdir(started)
    prewarm()
    [warm] = _spawned_children()
    deadline = time.monotonic() + 60  # its last warm import loads pyarrow's Parquet module
    while "_parquet" not in Path(f"/proc/{warm.pid}/maps").read_text():
        assert time.monotonic() < deadline, "the prewarmed child did not import pyarrow.parquet"
        time.sleep(0.05)
    monkeypatch.chdir(project)  # the pull step
    attempt = Attempt(
        "warm_events",
        None,
        state_url=f"file://{tmp_path / 'state'}",
        flow_run_id="00000000-0000-0000-0000-000000000002",
    )
    proc = start_attempt(attempt, "spawn")
    out = Output(proc)
    assert proc.wait() == 0, out.logs[-20:]
    out.join()
    assert proc.pid == warm.pid
    assert f"built in {project}" in out.logs
    assert out.messages[-1]["report"]["loaded_rows"]["events"] == 300


def test_prewarmed_child_is_replaced_when_the_environment_changed(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modules the child imported while it waited may have read the environment: a flow
    that changed it gets a fresh child, and the waiting one is gone."""
    prewarm()
    [warm] = _spawned_children()
    monkeypatch.setenv("FLOWS_TEST_SET_BY_THE_FLOW", "1")
    proc = start_attempt(_attempt(tmp_path, rows=100), "spawn")
    out = Output(proc)
    assert proc.wait() == 0, out.logs[-20:]
    out.join()
    assert proc.pid != warm.pid
    assert not psutil.pid_exists(warm.pid)
    assert out.messages[-1]["report"]["loaded_rows"]["events"] == 100


def test_a_discarded_prewarmed_child_is_gone_and_the_next_attempt_spawns_its_own(
    tmp_path: Path, home: Path
) -> None:
    """A fan-out parent runs no attempt itself: it ends the waiting interpreter at once,
    and an attempt started afterwards still runs, in a fresh child."""
    prewarm()
    [warm] = _spawned_children()
    discard_prewarmed()
    assert not psutil.pid_exists(warm.pid)
    proc = start_attempt(_attempt(tmp_path, rows=100), "spawn")
    out = Output(proc)
    assert proc.wait() == 0, out.logs[-20:]
    out.join()
    assert proc.pid != warm.pid
    assert out.messages[-1]["report"]["loaded_rows"]["events"] == 100
