"""PostgreSQL as a local server: a real cluster under a data dir, on a loopback port.

Used by the tests and the local dev stack. initdb and postgres refuse to run as root, so
as root the server runs as the `postgres` system user (created if missing).
"""

from __future__ import annotations

import math
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devstack.ports import remembered_ports
from devstack.service import Service

OS_USER = "postgres"
_CREATE_DATABASE = (
    "SELECT format('CREATE DATABASE %I', :'name') "
    "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \\gexec\n"
)


def find_bin_dir() -> Path:
    """Server binaries: $PG_BIN, else the newest /usr/lib/postgresql/*/bin, else pg_config's."""
    explicit = os.environ.get("PG_BIN")
    candidates = [Path(explicit)] if explicit else [*_debian_bin_dirs(), *_pg_config_bin_dir()]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    looked = ", ".join(map(str, candidates)) or "PG_BIN, /usr/lib/postgresql/*/bin, pg_config"
    raise RuntimeError(
        f"PostgreSQL server binaries not found (looked in {looked}): "
        "run scripts/install-services.sh, or point PG_BIN at a dir with initdb and postgres"
    )


def _debian_bin_dirs() -> list[Path]:
    """/usr/lib/postgresql/<version>/bin, newest version first."""
    dirs = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if _version(d.parent.name)]
    return sorted(dirs, key=lambda d: _version(d.parent.name), reverse=True)


def _version(name: str) -> tuple[int, ...]:
    parts = name.split(".")
    return tuple(map(int, parts)) if all(p.isdigit() for p in parts) else ()


def _pg_config_bin_dir() -> list[Path]:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    except OSError:  # no pg_config on PATH
        return []
    return [Path(out.stdout.strip())] if out.returncode == 0 else []


@dataclass
class Postgres(Service):
    """A PostgreSQL cluster in data_dir/pgdata; restarting on the same data_dir keeps the data.

    Password (SCRAM) authentication everywhere, TCP on 127.0.0.1 only, the unix socket inside
    data_dir. `user` is the cluster's superuser. The port is picked free on first use and
    remembered in data_dir/ports.json, so a restart serves the same DSN.
    """

    data_dir: Path
    port: int | None = None
    user: str = "flows"
    password: str = "flows"
    database: str = "flows"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()

    @cached_property
    def bin_dir(self) -> Path:
        return find_bin_dir()

    @cached_property
    def listen_port(self) -> int:
        ports = remembered_ports(
            self.data_dir / "ports.json", {"postgres": self.port}, avoid_plus=None
        )
        return ports["postgres"]

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def dsn(self, database: str | None = None) -> str:
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        name = quote(database or self.database, safe="")
        return f"postgresql://{user}:{password}@127.0.0.1:{self.listen_port}/{name}"

    def start(self, timeout: float = 60) -> None:
        """initdb on first use, start the server, make sure `database` exists."""
        self._prepare_data_dir()
        if self._running():
            raise RuntimeError(f"PostgreSQL already runs on {self.pgdata}")
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        options = (
            f"-p {self.listen_port} -c listen_addresses=127.0.0.1 "
            f"-k {shlex.quote(str(self.data_dir))}"
        )
        wait = ("-w", "-t", str(math.ceil(timeout)))
        started = self._as_owner(
            self._pg_ctl("start", *wait, "-o", options, "-l", str(self.log_path))
        )
        if started.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"PostgreSQL did not start: {started.stdout}{started.stderr}\n"
                f"{_tail(self.log_path)}"
            )
        self.create_database(self.database)

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown: open sessions are ended, committed data is kept."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._prepare_data_dir()
        if not self._running():
            return
        stopped = self._as_owner(
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(math.ceil(timeout)))
        )
        if stopped.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not stop: {stopped.stdout}{stopped.stderr}")

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"name={name}",
                "--host=127.0.0.1",
                f"--port={self.listen_port}",
                f"--username={self.user}",
                "--dbname=postgres",
            ],
            input=_CREATE_DATABASE,
            capture_output=True,
            text=True,
            # the password in the environment, not on a command line anyone can read in ps
            env={**_clean_env(), "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"},
        )
        if result.returncode != 0:
            raise RuntimeError(f"could not create database {name!r}: {result.stderr}")

    def _pg_ctl(self, *args: str) -> list[str]:
        return [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args]

    def _running(self) -> bool:
        return self._as_owner(self._pg_ctl("status")).returncode == 0

    def _initdb(self) -> None:
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir, prefix=".pw-") as pwfile:
            pwfile.write(self.password + "\n")
            pwfile.flush()
            _give_to_owner(Path(pwfile.name))
            result = self._as_owner(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    f"--username={self.user}",
                    f"--pwfile={pwfile.name}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ]
            )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _prepare_data_dir(self) -> None:
        """As root, data_dir goes to the postgres user, who must also be able to reach it.

        Parents that deny others all access (pytest's /tmp/pytest-of-root, /root) get the
        search bit for others: the postgres user can then pass through, not list them.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        _give_to_owner(self.data_dir)
        self.data_dir.chmod(0o700)

    def _as_owner(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the user owning the cluster (never root)."""
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=self.data_dir,
            env=_clean_env(),
            **_owner_credentials(),
        )


def _owner_credentials() -> dict[str, Any]:
    """subprocess arguments dropping root to the postgres user; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    owner = _os_user()
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", OS_USER], check=True
        )
        return pwd.getpwnam(OS_USER)


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        owner = _os_user()
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables: they would override host, port or user."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
