"""The standing fault-injection test: many runs, each under faults drawn at random, and after
every one the destination is exact.

Seeded: `FLOWS_FAULT_SEED` replays a run (the suite prints the seed it drew and the count of
scenarios at the end); `FLOWS_FAULT_SCENARIOS` sets how many (default 12). Every scenario:

1. draws a destination (DuckDB or PostgreSQL), a source (`plain`, with no cursor,
   `synthetic`, with one, or `checkpointed`, an ordered cursor extracted in segments of one
   second: ordered_synthetic.py) and a fault: S3 answering 503 for a while (shorter or longer than
   the store's retry window), S3 replies lost after the store committed, S3 latency, S3
   connections reset, PostgreSQL cutting every connection for a while, a SIGKILL of the
   whole process group at a random moment, the process frozen (SIGSTOP) past its lease while
   a second attempt of the same run takes over, a concurrent run of the same pipeline, or a
   second writer on another host, in another PID namespace on the same hostname, or with
   its clock skewed within or far beyond the lease's TTL;
2. runs `flows run` under it: the run ends with 0, or with a documented code (1, 3, 5), or
   was killed;
3. retries the same run (same `--run-id`, a fresh pod, faults off) until it exits 0;
4. checks the destination: every id once, no orphaned nested rows, no load id twice, and
   for the cursor-less source one load in all (its rows were extracted once).

Real SeaweedFS behind tests/integration/faults.py's proxy, real PostgreSQL behind its TCP
proxy, real DuckDB; the runs are real `flows` processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.postgres import Postgres
from devstack.seaweedfs import SeaweedFS
from tests.integration.faults import COUNT_VAR, SCENARIOS, SEED_VAR, Fault, FaultProxy, TcpProxy
from tests.integration.helpers import exact, pg_counts, run_cli, synthetic_counts

ROWS = 20_000
TTL = 6.0  # renewals every 0.75 s, self-fence 4.5 s after the last one
WINDOW = 4.0  # the store's retry window
DOCUMENTED = {0, 1, 3, 5}
PLAIN = "tests.integration.plain_append:plain"
ORDERED = "tests.integration.ordered_synthetic:ordered"
SOURCES = ("checkpointed", "plain", "synthetic")
SKEWED = Path(__file__).with_name("skewed.py")


@dataclass
class Scenario:
    index: int
    fault: str
    destination: str
    source: str
    rng: random.Random
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"scenario {self.index} (seed {os.environ[SEED_VAR]}): {self.fault} into "
            f"{self.destination}, source {self.source}; {'; '.join(self.notes)}"
        )


class World:
    """One scenario's services, pods and commands."""

    def __init__(
        self,
        scenario: Scenario,
        tmp_path: Path,
        proxy: FaultProxy,
        flows_env: dict[str, str],
        bucket: str,
        postgres: Postgres,
    ) -> None:
        self.scenario, self.tmp, self.proxy = scenario, tmp_path, proxy
        self.state = f"s3://{bucket}/s{scenario.index}"
        self.cutter: TcpProxy | None = None
        self.pods = 0
        env = {
            **flows_env,
            "AWS_ENDPOINT_URL": proxy.url,
            "SOURCES__PLAIN__ROWS": str(ROWS),
            "SOURCES__SYNTHETIC__ROWS": str(ROWS),
            "SOURCES__ORDERED__ROWS": str(ROWS),
            "SOURCES__ORDERED__PAUSE": "0.15",
            "DATA_WRITER__FILE_MAX_ITEMS": "2000",
            "LOAD__WORKERS": "2",
            "STATE__LEASE_TTL": str(TTL),
            "STATE__RETRY_WINDOW": str(WINDOW),
            "STATE__RETRY_ATTEMPTS": "0",
            "STATE__RETRY_INITIAL_WAIT": "0.2",
            "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
        }
        if scenario.destination == "postgres":
            database = f"f{scenario.index}_{os.urandom(3).hex()}"
            postgres.create_database(database)
            self.dsn = postgres.dsn(database)
            self.cutter = TcpProxy("127.0.0.1", postgres.listen_port).start()
            proxied = self.dsn.replace(f":{postgres.listen_port}/", f":{self.cutter.port}/")
            env |= {
                "PIPELINES__DESTINATION": "postgres",
                "DESTINATION__POSTGRES__CREDENTIALS": proxied,
            }
        else:
            self.database = tmp_path / f"warehouse-{scenario.index}.duckdb"
            env |= {"DESTINATION__DUCKDB__CREDENTIALS": str(self.database)}
        self.env = env

    def args(self, run_id: str, *more: str) -> list[str]:
        self.pods += 1
        pod = self.tmp / f"s{self.scenario.index}-pod{self.pods}"
        if self.scenario.source == "plain":
            what = [PLAIN, "--name", "plain", "--dataset", "synthetic"]
        elif self.scenario.source == "checkpointed":
            what = [ORDERED, "--name", "ordered", "--dataset", "synthetic"]
            what += ["--checkpoint-every", "1"]
        else:
            what = ["synthetic"]
        common = ["--state-url", self.state, "--pipelines-dir", str(pod), "--run-id", run_id]
        return ["run", *what, *common, *more]

    def start(
        self, run_id: str, *more: str, skew: float = 0.0, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[str]:
        flows = [str(SKEWED), str(skew)] if skew else ["-m", "flows"]
        return subprocess.Popen(
            [*prefix, sys.executable, *flows, *self.args(run_id, *more)],
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a kill takes the whole pod
        )

    def counts(self) -> dict[str, int]:
        if self.scenario.destination == "postgres":
            return pg_counts(self.dsn)
        return synthetic_counts(self.database)

    def close(self) -> None:
        self.proxy.clear()
        if self.cutter is not None:
            self.cutter.stop()


def finish(proc: subprocess.Popen[str], scenario: Scenario, timeout: float = 180) -> int:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError(f"{scenario}: a run hung for {timeout} s: {err[-2000:]}") from None
    code = proc.returncode
    scenario.notes.append(f"exit {code}")
    assert code in DOCUMENTED or code == -signal.SIGKILL, f"{scenario}: exit {code}: {err[-3000:]}"
    if code not in (0, -signal.SIGKILL):
        last = err.strip().splitlines()[-1] if err.strip() else ""
        scenario.notes.append(last[:160])
    return code


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


# faults: each runs the first attempt(s) of run "R" under one kind of trouble ----------------


def store_503(world: World, rng: random.Random) -> None:
    path = rng.choice(["/manifests/", "/blobs/", "/lease.json", "/"])
    seconds = rng.choice([WINDOW / 2, WINDOW * 3])
    after = rng.randrange(0, 8)
    world.scenario.notes.append(f"503 on {path} after {after} for {seconds:g} s")
    world.proxy.add(Fault("503", path=path, after=after, times=None, until=time.monotonic() + 60))
    proc = world.start("R")
    later(seconds, world.proxy.clear)
    finish(proc, world.scenario)


def store_503_window(world: World, rng: random.Random) -> None:
    """503 that starts at a random request and lasts a random time from its start."""
    path = rng.choice(["/manifests/", "/blobs/", "/"])
    start_at, seconds = rng.uniform(0.5, 8), rng.uniform(1, WINDOW * 2.5)
    world.scenario.notes.append(f"503 on {path} from {start_at:.1f} s for {seconds:.1f} s")
    proc = world.start("R")

    def outage() -> None:
        world.proxy.add(Fault("503", path=path, times=None, until=time.monotonic() + seconds))

    opening = later(start_at, outage)
    finish(proc, world.scenario)
    opening.cancel()  # a run that ended before its outage began: the retries run without it


def store_lost_reply(world: World, rng: random.Random) -> None:
    path = rng.choice(["/manifests/", "/blobs/", "/lease.json"])
    after = rng.randrange(0, 4)
    world.scenario.notes.append(f"lost reply on PUT {path} after {after}")
    world.proxy.add(Fault("drop", method="PUT", path=path, after=after, times=1))
    finish(world.start("R"), world.scenario)


def store_latency(world: World, rng: random.Random) -> None:
    seconds = rng.uniform(0.2, 1.5)
    world.scenario.notes.append(f"{seconds:.2f} s latency on every 3rd request")
    for skip in range(0, 60, 3):
        world.proxy.add(Fault("delay", after=skip, times=1, seconds=seconds))
    finish(world.start("R"), world.scenario)


def store_reset(world: World, rng: random.Random) -> None:
    after = rng.randrange(0, 20)
    world.scenario.notes.append(f"connections reset on 3 requests after {after}")
    world.proxy.add(Fault("reset", after=after, times=3))
    finish(world.start("R"), world.scenario)


def destination_cut(world: World, rng: random.Random) -> None:
    assert world.cutter is not None
    cutter = world.cutter
    at, seconds = rng.uniform(1, 8), rng.uniform(2, 12)
    world.scenario.notes.append(f"database cut at {at:.1f} s for {seconds:.1f} s")
    proc = world.start("R")
    cutting = later(at, lambda: cutter.cut(seconds))
    finish(proc, world.scenario)
    # the retries run with the fault off: without a cut that had not begun, and once a cut
    # that had is over (a database restart ends on its own; Prefect's retries back off)
    cutting.cancel()
    cutter.wait_up()


def kill(world: World, rng: random.Random) -> None:
    at = rng.uniform(0.5, 9)
    world.scenario.notes.append(f"SIGKILL at {at:.1f} s")
    proc = world.start("R")
    timer = later(at, lambda: _killpg(proc))
    finish(proc, world.scenario)
    timer.cancel()


def frozen(world: World, rng: random.Random) -> None:
    """Attempt A is stopped past its lease; attempt B of the same run takes over; A wakes."""
    at = rng.uniform(1, 8)
    world.scenario.notes.append(f"SIGSTOP at {at:.1f} s for {TTL * 2:g} s, a second attempt")
    first = world.start("R")
    time.sleep(at)
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGSTOP)
        second = world.start("R", "--wait", str(TTL * 3))
        time.sleep(TTL * 2)
        os.killpg(first.pid, signal.SIGCONT)
        finish(second, world.scenario)
    finish(first, world.scenario)


def concurrent(world: World, rng: random.Random) -> None:
    """Two runs of the pipeline at once (two deployments, a manual run beside a scheduled
    one): one waits for the other or gives up with exit 3."""
    gap = rng.uniform(0, 3)
    world.scenario.notes.append(f"a second run {gap:.1f} s later")
    first = world.start("R")
    time.sleep(gap)
    second = world.start("S", "--wait", str(rng.choice([0, TTL * 4])))
    finish(first, world.scenario)
    finish(second, world.scenario)


def other_holder(world: World, rng: random.Random) -> None:
    """A second writer of the pipeline, concurrent with the first: on another machine (its
    own hostname), or on this one with the same hostname in another PID namespace (a
    container with host networking), or with its wall clock skewed within or far beyond
    the lease's TTL; a second run, or a second attempt of the same run."""
    where = rng.choice(["other-host", "same-host-other-pidns", "skew"])
    skew = rng.choice([-600.0, -20.0, 20.0, 600.0]) if where == "skew" else 0.0
    run_id = rng.choice(["R", "S"])
    gap = rng.uniform(0, 4)
    world.scenario.notes.append(
        f"second writer {where} (skew {skew:+g} s) as run {run_id}, {gap:.1f} s later"
    )
    first = world.start("R")
    time.sleep(gap)
    prefix = (
        () if where == "skew" else namespaces("another-node" if where == "other-host" else None)
    )
    second = world.start(run_id, "--wait", str(TTL * 4), skew=skew, prefix=prefix)
    finish(first, world.scenario)
    finish(second, world.scenario)


def namespaces(hostname: str | None) -> tuple[str, ...]:
    """A command prefix: a PID namespace of its own (as a container has), and with
    `hostname` a UTS namespace too (another machine, as far as the lease can tell)."""
    rename = ("--uts", "sh", "-c", f'hostname {hostname} && exec "$0" "$@"') if hostname else ()
    return ("unshare", "--pid", "--fork", "--mount-proc", *rename)


def _killpg(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


FAULTS: dict[str, Callable[[World, random.Random], None]] = {
    "store-503": store_503,
    "store-503-window": store_503_window,
    "store-lost-reply": store_lost_reply,
    "store-latency": store_latency,
    "store-reset": store_reset,
    "destination-cut": destination_cut,
    "kill": kill,
    "frozen": frozen,
    "concurrent": concurrent,
    "other-holder": other_holder,
}


def scenarios() -> Iterator[Scenario]:
    seed = int(os.environ[SEED_VAR])
    count = int(os.environ.get(COUNT_VAR, SCENARIOS))
    rng = random.Random(seed)
    order = rng.sample(sorted(FAULTS), len(FAULTS))  # every kind once before any repeats
    for index in range(count):
        fault = order[index % len(order)]
        destination = rng.choice(["duckdb", "postgres"])
        if fault == "destination-cut":
            destination = "postgres"
        # two different runs of a cursor-less source both load its rows, by design
        # every source in turn, so each kind of fault meets a checkpointed run over time
        source = SOURCES[index % len(SOURCES)]
        if fault in ("concurrent", "other-holder") and source == "plain":
            source = "checkpointed"
        yield Scenario(index, fault, destination, source, random.Random(rng.random()))


@pytest.fixture
def proxy(seaweed: SeaweedFS) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed.endpoint_url) as running:
        yield running


def test_every_fault_leaves_the_destination_exact(
    proxy: FaultProxy,
    postgres: Postgres,
    flows_env: dict[str, str],
    bucket: str,
    tmp_path: Path,
) -> None:
    done: list[str] = []
    for scenario in scenarios():
        world = World(scenario, tmp_path, proxy, flows_env, bucket, postgres)
        try:
            FAULTS[scenario.fault](world, scenario.rng)
            proxy.clear()
            # the same run again, faults off, until it says it is done
            for _ in range(3):
                retry = run_cli(world.args("R", "--wait", str(TTL * 3)), world.env)
                scenario.notes.append(f"retry exit {retry.code}")
                if retry.code == 0:
                    break
                assert retry.code in DOCUMENTED, f"{scenario}: {retry.stderr[-3000:]}"
            assert retry.code == 0, f"{scenario}: {retry.stderr[-3000:]}"
        finally:
            world.close()
        counts = world.counts()
        assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS), f"{scenario}: {counts}"
        assert counts["loads"] == counts["distinct_loads"], f"{scenario}: {counts}"
        if scenario.source == "plain":
            assert counts["loads"] == 1, f"{scenario}: extracted more than once: {counts}"
        done.append(str(scenario))
    print("\n".join(done))
