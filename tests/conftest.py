"""Real services for the tests: SeaweedFS (S3) and PostgreSQL, started once per session.

Nothing here is mocked; a missing service binary fails the run loudly (the test command
installs them with scripts/install-services.sh).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs

from devstack.postgres import Postgres
from devstack.seaweedfs import SeaweedFS
from tests.integration.faults import COUNT_VAR, SCENARIOS, SEED_VAR

# no telemetry calls from dlt in tests; the network is closed anyway
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
# the embedded default starts Prefect's ephemeral server; on a busy machine it needs more
# than the 20 s Prefect allows by default (the tests' subprocesses inherit this)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def pytest_configure(config: pytest.Config) -> None:
    """Draws the fault-injection seed once, in the controller: xdist's workers inherit it."""
    os.environ.setdefault(SEED_VAR, str(random.SystemRandom().randrange(2**32)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = any(
        "test_fault_injection" in getattr(report, "nodeid", "")
        for reports in terminalreporter.stats.values()
        for report in reports
    )
    if not ran:
        return
    seed, count = os.environ[SEED_VAR], os.environ.get(COUNT_VAR, SCENARIOS)
    terminalreporter.write_line(
        f"fault injection: seed {seed}, {count} scenarios "
        f"(replay: {SEED_VAR}={seed} pytest tests/integration/test_fault_injection.py)"
    )


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(seaweed: SeaweedFS) -> str:
    """A fresh, empty bucket per test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    seaweed.create_bucket(name)
    return name


@pytest.fixture
def s3(seaweed: SeaweedFS) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        **seaweed.storage_options(), skip_instance_cache=True, use_listings_cache=False
    )


@pytest.fixture
def flows_env(
    tmp_path: Path, seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment of a platform process: S3 credentials, its own FLOWS_HOME and DuckDB file."""
    env = {
        **seaweed.env(),
        "FLOWS_HOME": str(tmp_path / "home"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "STATE__RETRY_ATTEMPTS": "3",
        "STATE__RETRY_INITIAL_WAIT": "0.2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
