"""The state store against a real S3 server (SeaweedFS): bad snapshots, outages, races."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import s3fs

from devstack.ports import free_port
from devstack.seaweedfs import SeaweedFS, TLSFiles
from flows.durable.run import run_pipeline
from flows.state import StoreUnreachableError, open_store
from tests.integration.helpers import (
    assert_late_writer_cannot_clobber,
    bucket_listing,
    exact,
    run_args,
    run_cli,
    synthetic_counts,
)

ROWS = 20_000


@pytest.fixture
def env(flows_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **flows_env,
        "SOURCES__SYNTHETIC__ROWS": str(ROWS),
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
    }


def _start(env: dict[str, str], state: str, pod: Path) -> subprocess.Popen[str]:
    """`flows run synthetic` in the background, for the tests that race two runs."""
    args = run_args(state, pod)
    return subprocess.Popen(
        [sys.executable, "-m", "flows", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_run(env: dict[str, str], bucket: str, tmp_path: Path) -> str:
    state = f"s3://{bucket}/state"
    result = run_cli(run_args(state, tmp_path / "pod1"), env)
    assert result.code == 0, result.stderr[-2000:]
    return state


def _blob_of(s3: s3fs.S3FileSystem, bucket: str, suffix: str) -> tuple[str, int]:
    manifests = sorted(s3.ls(f"{bucket}/state/synthetic/manifests"))
    manifest = json.loads(s3.cat_file(manifests[-1]))
    entry = next(f for f in manifest["files"] if f["path"].endswith(suffix))
    return f"{bucket}/state/synthetic/blobs/{entry['sha256']}", entry["size"]


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_corrupt_blob_is_refused_and_bucket_untouched(
    damage: str, env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    state = _first_run(env, bucket, tmp_path)
    blob, size = _blob_of(s3, bucket, "state.json")
    data = s3.cat_file(blob)
    s3.pipe_file(blob, data[: size // 2] if damage == "truncated" else data[::-1])
    before = bucket_listing(s3, bucket)
    result = run_cli(run_args(state, tmp_path / "pod2"), env)
    assert result.code == 4, result.stderr
    assert "CorruptSnapshotError" in result.stderr and "state.json" in result.stderr
    assert bucket_listing(s3, bucket) == before
    assert not (tmp_path / "pod2" / "synthetic" / "state.json").exists()


def test_foreign_manifest_is_refused(
    env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    state = _first_run(env, bucket, tmp_path)
    # a manifest of `synthetic` copied under another pipeline's prefix
    latest = sorted(s3.ls(f"{bucket}/state/synthetic/manifests"))[-1]
    s3.pipe_file(f"{bucket}/state/products/manifests/000000000001.json", s3.cat_file(latest))
    before = bucket_listing(s3, bucket)
    env = {**env, "SOURCES__PRODUCTS__CREDENTIALS": "postgresql://x:y@127.0.0.1:1/z"}
    result = run_cli(
        ["run", "products", "--state-url", state, "--pipelines-dir", str(tmp_path / "pod2")], env
    )
    assert result.code == 4, result.stderr
    assert "belongs to pipeline 'synthetic', not 'products'" in result.stderr
    assert bucket_listing(s3, bucket) == before


def test_unreachable_store_is_retried_then_reported(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port(avoid_plus=None)
    env = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "STATE__RETRY_ATTEMPTS": "3"}
    started = time.monotonic()
    result = run_cli(
        run_args("s3://nowhere/state", tmp_path / "pod"),
        env,
    )
    assert result.code == 5, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "s3://nowhere/state unreachable" in line and "at most 3 tries" in line
    assert time.monotonic() - started < 120
    assert not (tmp_path / "home" / "warehouse").exists() or not any(
        (tmp_path / "home" / "warehouse").iterdir()
    )


def test_two_concurrent_runs_exactly_one_proceeds(
    env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    state = f"s3://{bucket}/state"
    env = {**env, "SOURCES__SYNTHETIC__ROWS": "60000"}  # long enough to overlap
    procs = [_start(env, state, tmp_path / f"pod{i}") for i in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    loser = next(err for code, err in results if code == 3)
    assert "is locked by" in loser and "pid" in loser
    assert {
        k: v
        for k, v in synthetic_counts(tmp_path / "warehouse.duckdb").items()
        if k in exact(60000)
    } == exact(60000)


def test_late_writer_cannot_clobber_a_taken_lease(env: dict[str, str], bucket: str) -> None:
    """The interleaving behind "exactly one proceeds", staged instead of hoped for."""
    store = open_store(f"s3://{bucket}/state")
    assert store.conditional_writes
    assert_late_writer_cannot_clobber(store, store.path("synthetic", "lease.json"))


def test_waiting_run_proceeds_after_the_first(
    env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    state = f"s3://{bucket}/state"
    env = {**env, "SOURCES__SYNTHETIC__ROWS": "100000"}  # the first run lasts seconds
    first = _start(env, state, tmp_path / "pod1")
    deadline = time.monotonic() + 60
    while not s3.exists(f"{bucket}/state/synthetic/lease.json") and time.monotonic() < deadline:
        s3.invalidate_cache()
        time.sleep(0.1)  # the first run holds the lease
    second = run_cli(
        run_args(state, tmp_path / "pod2", "--wait", "120", "--json"),
        env,
    )
    assert first.wait(timeout=300) == 0
    assert second.code == 0, second.stderr[-2000:]
    assert second.json()["extracted_rows"].get("events", 0) == 0
    assert synthetic_counts(tmp_path / "warehouse.duckdb")["events"] == 100_000


@pytest.mark.parametrize("generation", [1, 2])
def test_stale_snapshot_never_loads_twice(
    generation: int,
    env: dict[str, str],
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _first_run(env, bucket, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # generations 1 and 2 were taken after extract and normalize: the package is pending
    # there, but it is loaded in truth
    report = run_pipeline(
        "synthetic", state_url=state, pipelines_dir=tmp_path / "pod2", generation=generation
    )
    assert report.resume.extracted or report.resume.normalized
    assert len(report.resume.already_loaded) == 1
    assert report.loaded_packages == []
    counts = synthetic_counts(tmp_path / "warehouse.duckdb")
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS)
    assert counts["loads"] == counts["distinct_loads"] == 1


LIGHT_STORE_CODE = """
import sys
from flows.state import open_store
store = open_store(sys.argv[1], origin="test")
store.write_bytes(store.path("probe"), b"one")
print(store.read_bytes(store.path("probe")).decode())
heavy = ("s3fs", "botocore", "aiobotocore", "aiohttp", "httpx")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_s3_store_keeps_the_python_s3_stack_out(env: dict[str, str], bucket: str) -> None:
    """The run process's S3 client is obstore: s3fs, botocore and aiohttp (about 40 MB in a
    run process, measured) stay out of memory."""
    proc = subprocess.run(
        [sys.executable, "-c", LIGHT_STORE_CODE, f"s3://{bucket}/probe"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["one", "[]"]


FORK_CODE = """
import os, sys
from flows.state import StateStoreError, open_store  # imports dlt: a fork shares it
from flows.attempt.start import start_method
assert start_method() == "fork"
store = open_store(sys.argv[1], origin="test")
store.write_bytes(store.path("probe"), b"parent")
print(start_method(), flush=True)
pid = os.fork()
if pid == 0:
    try:
        store.read_bytes(store.path("probe"))
        print("child read", flush=True)
    except StateStoreError as err:
        print("refused:", err, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print(store.read_bytes(store.path("probe")).decode(), flush=True)
"""


def test_a_fork_after_the_s3_store_was_used_is_refused_not_hung(
    env: dict[str, str], bucket: str
) -> None:
    """obstore's HTTP runtime does not survive a fork: an attempt started after this process
    used the store is spawned, and a forked child that reaches for the store fails at once."""
    proc = subprocess.run(
        [sys.executable, "-c", FORK_CODE, f"s3://{bucket}/probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "spawn"
    assert lines[1].startswith("refused:") and "start it with spawn" in lines[1]
    assert lines[2] == "parent"


def _private_ca(folder: Path) -> TLSFiles:
    """A CA of the test's own and a certificate it signed for 127.0.0.1 (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True)
    now = datetime.now(UTC)

    def issue(subject: str, key: Any, issuer: x509.Name, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flows test CA")])
    ca_cert = issue("flows test CA", ca_key, ca_name, ca_key, ca=True)
    server_cert = issue("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    files = TLSFiles(folder / "server.pem", folder / "server.key", folder / "ca.pem")
    files.certificate.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


def test_s3_store_behind_a_private_ca_is_trusted_through_aws_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 endpoint whose certificate a private CA signed: AWS_CA_BUNDLE (botocore's
    variable) makes the store trust it; without it the store refuses the endpoint."""
    tls = _private_ca(tmp_path / "tls")
    with SeaweedFS(tmp_path / "s3", tls=tls) as server:
        assert server.endpoint_url.startswith("https://")
        server.create_bucket("private")
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("STATE__RETRY_WINDOW", "2")
        store = open_store("s3://private/state")
        store.write_bytes(store.path("probe"), b"over tls")
        assert store.read_bytes(store.path("probe")) == b"over tls"

        monkeypatch.delenv("AWS_CA_BUNDLE")
        with pytest.raises(StoreUnreachableError, match="s3://private/state unreachable"):
            open_store("s3://private/state").read_bytes("private/state/probe")
