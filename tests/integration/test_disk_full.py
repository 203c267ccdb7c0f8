"""A full local disk during restore is named for what it is: the folder and the bytes needed,
exit 6 at once, never retried as a store outage (the pipelines dir is a real 1 MiB tmpfs)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs

from flows.errors import EXIT_DISK_FULL, DiskFullError
from flows.state import StateSession, open_store
from tests.integration.helpers import bucket_listing, run_cli


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs as the pipelines dir (needs root, as the test machines run)."""
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _snapshot(url: str, tmp_path: Path, files: dict[str, bytes]) -> int:
    """Publishes one generation of `synthetic` holding `files` (under schemas/); its bytes."""
    session = StateSession(open_store(url), "synthetic", tmp_path / "writer")
    session.open()
    try:
        (session.working_dir / "schemas").mkdir(parents=True)
        (session.working_dir / "state.json").write_bytes(b"{}")
        for name, data in files.items():
            (session.working_dir / "schemas" / name).write_bytes(data)
        manifest = session.snapshot("extract")
        assert manifest is not None
        return manifest.total_bytes
    finally:
        session.close(collect=False)


def _state_objects(s3: s3fs.S3FileSystem, bucket: str) -> dict[str, tuple[int, str]]:
    return {k: v for k, v in bucket_listing(s3, bucket).items() if "lease.json" not in k}


def test_restore_larger_than_the_disk_fails_at_once_naming_folder_and_bytes(
    small_disk: Path, flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    """2 MiB of state into 1 MiB: refused before a byte is downloaded (it used to retry for
    the whole retry window and end with exit 5, "state store unreachable")."""
    url = f"s3://{bucket}/state"
    total = _snapshot(url, tmp_path, {"big.json": os.urandom(2 * 2**20)})
    before = _state_objects(s3, bucket)
    started = time.monotonic()
    result = run_cli(
        ["run", "synthetic", "--state-url", url, "--pipelines-dir", str(small_disk)], {}
    )
    took = time.monotonic() - started
    assert result.code == EXIT_DISK_FULL, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"needs {total:,} bytes in {small_disk}" in lines[0], lines[0]
    assert "DiskFullError: local disk full" in lines[0] and "unreachable" not in lines[0]
    assert took < 30, took
    assert list(small_disk.iterdir()) == []
    assert _state_objects(s3, bucket) == before


def test_a_disk_that_fills_during_the_download_is_not_a_store_outage(
    small_disk: Path, flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    """400 files of 1000 bytes pass the free-space check (400 kB of 1 MiB) but take a page
    each on tmpfs: the download itself hits ENOSPC, which is refused at once by errno."""
    url = f"s3://{bucket}/state"
    _snapshot(url, tmp_path, {f"f{i}.json": os.urandom(1000) for i in range(400)})
    before = bucket_listing(s3, bucket)
    session = StateSession(open_store(url), "synthetic", small_disk)
    with pytest.raises(DiskFullError) as full:
        session.open()
    assert full.value.exit_code == EXIT_DISK_FULL
    assert str(small_disk) in str(full.value) and "No space left" in str(full.value)
    assert list(small_disk.iterdir()) == []
    assert bucket_listing(s3, bucket) == before
    assert not s3.exists(f"{bucket}/state/synthetic/lease.json")  # released
