"""The local stack without a cluster: PostgreSQL, SeaweedFS, a Prefect server on that
PostgreSQL, a process worker and the deployments, on this machine.

    flows stack up      # UI at http://127.0.0.1:4200 (auth string printed)
    flows stack down    # stops the processes, keeps every byte of data
    flows stack env     # export lines for a shell that talks to the running stack, from
                        # any directory (`up` remembers where it runs; env never creates one)

Dev tooling (the devstack distribution, never in the image); `flows stack` is its plugin
(devstack/cli.py). The integration tests start the same stack on free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.ports import remembered_ports
from devstack.postgres import Postgres
from devstack.seaweedfs import SeaweedFS

# The checkout: devstack is only ever installed editable from it (scripts/bootstrap.sh), and
# the stack deploys the checkout's prefect.yaml.
PROJECT_DIR = Path(__file__).resolve().parents[2]
BUCKET = "prefect-dlt"


class StackNotRunningError(Exception):
    """`flows stack env` found no running stack: it says so instead of making a new one."""


def pointer_path() -> Path:
    """Where `flows stack up` notes the root of the stack it started (one per user)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "flows" / "stack.json"


def remember(root: Path) -> None:
    path = pointer_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"root": str(root.resolve())}))


def server_running(root: Path) -> bool:
    """True when the stack under `root` has a live server process (reads only)."""
    try:
        pid = json.loads((root / "pids.json").read_text()).get("server")
    except (OSError, ValueError):
        return False
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_running(root: Path | None, default_root: Path) -> LocalStack:
    """The running stack: under `root` if given, else the default root or the one `up`
    last started. Never creates a stack home, a password or a port file."""
    candidates = [root] if root is not None else [default_root]
    if root is None:
        try:
            remembered = Path(json.loads(pointer_path().read_text())["root"])
        except (OSError, ValueError, KeyError):
            remembered = None
        if remembered is not None and remembered.resolve() != default_root.resolve():
            candidates.append(remembered)
    for candidate in candidates:
        if server_running(candidate.resolve()):
            return LocalStack(candidate)
    looked = ", ".join(str(c.resolve()) for c in candidates)
    raise StackNotRunningError(
        f"no local stack is running (looked in {looked}): start one with `flows stack up`"
        + ("" if root is not None else " or pass --dir")
    )


def server_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def wait_ready(api_url: str, timeout: float, alive: Callable[[], bool]) -> bool:
    """Polls /api/ready (503 until the database answers) while the server process lives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{api_url}/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


@dataclass
class LocalStack:
    root: Path
    api_port: int | None = None
    pool: str = "dlt-local"
    alert_webhook_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        ports = remembered_ports(self.root / "ports.json", {"api": self.api_port, "postgres": None})
        self.api_port = ports["api"]
        self.postgres = Postgres(self.root / "postgres", port=ports["postgres"])
        self.seaweed = SeaweedFS(self.root / "seaweedfs")

    # addresses and credentials ---------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api"

    @property
    def auth_string(self) -> str:
        path = self.root / "auth-string"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"admin:{secrets.token_urlsafe(18)}")
            path.chmod(0o600)
        return path.read_text().strip()

    def client_env(self) -> dict[str, str]:
        """What a client (CLI, tests, `prefect deploy`) needs to talk to the stack."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.auth_string,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }

    def shell_env(self) -> dict[str, str]:
        """What `flows stack env` exports: run_env without FLOWS_PROJECT_DIR, which names the
        platform's checkout (its deployments' folder): a user's project in that shell is
        deployed from its own folder (`flows deploy` there) and runs there."""
        return {k: v for k, v in self.run_env().items() if k != "FLOWS_PROJECT_DIR"}

    def run_env(self) -> dict[str, str]:
        """What flow runs need: state store, destinations, sources (inherited from the worker)."""
        s3 = self.seaweed.env()
        return {
            **self.client_env(),
            **s3,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "FLOWS_HOME": str(self.root / "home"),
            "STATE__URL": f"s3://{BUCKET}/state",
            "SOURCES__PRODUCTS__CREDENTIALS": self.postgres.dsn("shop"),
            "SOURCES__FILES__BUCKET_URL": f"s3://{BUCKET}/landing",
            "SOURCES__FILES__CREDENTIALS__AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
            "SOURCES__FILES__CREDENTIALS__AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
            "SOURCES__FILES__CREDENTIALS__ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
            "FLOWS_WORK_POOL": self.pool,
            "FLOWS_PROJECT_DIR": str(PROJECT_DIR),
            "FLOWS_IMAGE": "",
            **self.extra_env,
        }

    # lifecycle -------------------------------------------------------------------------------

    def up(self, deploy: bool = True, worker: bool = True) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        for database in ("prefect", "shop"):
            self.postgres.create_database(database)
        self.seaweed.start()
        self.seaweed.create_bucket(BUCKET)
        self._start_server()
        self.setup()
        if deploy:
            self.deploy()
        if worker:
            self._spawn(
                "worker",
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    self.pool,
                    "--type",
                    "process",
                ],
                self.run_env(),
            )

    def setup(self) -> list[str]:
        return self._flows(
            ["setup", "--pool", self.pool, "--type", "process", "--pool-concurrency", "4"]
            + (["--alert-webhook-url", self.alert_webhook_url] if self.alert_webhook_url else [])
        )

    def deploy(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "flows", "deploy", "--project-dir", str(PROJECT_DIR)],
            cwd=PROJECT_DIR,
            env={**os.environ, **self.run_env()},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"prefect deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )

    def down(self) -> None:
        for name in ("worker", "server"):
            self._stop(name)
        self.seaweed.stop()
        self.postgres.stop()

    # internals -------------------------------------------------------------------------------

    def _flows(self, args: list[str]) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "flows", *args],
            env={**os.environ, **self.run_env()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"flows {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout.splitlines()

    def _start_server(self) -> None:
        env = {
            **self.client_env(),
            "PREFECT_HOME": str(self.root / "prefect-home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.postgres.dsn("prefect").replace(
                "postgresql://", "postgresql+asyncpg://"
            ),
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,
            "PREFECT_UI_API_URL": self.api_url,
        }
        self._spawn("server", server_command(int(self.api_port or 4200)), env)
        if not wait_ready(self.api_url, 120, lambda: self._alive("server")):
            log = (self.root / "logs" / "server.log").read_text()[-3000:]
            raise RuntimeError(f"Prefect server did not become ready:\n{log}")

    def _pids(self) -> dict[str, int]:
        path = self.root / "pids.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _alive(self, name: str) -> bool:
        pid = self._pids().get(name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        if self._alive(name):
            return
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_DIR,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pids = self._pids()
        pids[name] = proc.pid
        (self.root / "pids.json").write_text(json.dumps(pids))

    def _stop(self, name: str, timeout: float = 20) -> None:
        pid = self._pids().get(name)
        if pid is None or not self._alive(name):
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(name) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if self._alive(name):
            os.killpg(pid, signal.SIGKILL)
        pids = self._pids()
        pids.pop(name, None)
        (self.root / "pids.json").write_text(json.dumps(pids))
