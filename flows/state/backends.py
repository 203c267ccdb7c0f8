"""What the state store needs of an object store, and the two stores that are not S3.

A backend's calls raise the builtin families the store decides on: FileNotFoundError for a
missing object, PermissionError or ValueError for a request that was refused (retrying cannot
help), any other OSError (ConnectionError, TimeoutError) for what another try may fix.

- LocalBackend: `file://` folders; writes are atomic (temporary file, then rename) and
  conditional writes hold a file lock.
- FsspecBackend: `gs://`, `az://` (with gcsfs or adlfs installed) and `memory://` (tests)
  through fsspec; no conditional writes (the lease writes, waits and reads back).
- S3Backend (s3.py): `s3://`, through obstore.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

# Uploads hold at most UPLOAD_BUFFER_BYTES in memory (and at least one file): small files go
# several at once, a file of two parts or more as a multipart upload, UPLOAD_PART_CONCURRENCY
# parts at a time, read from disk as they go. (s3fs read files under twice its part size
# whole, sent ten parts of a big one at once and up to a few hundred files at once: a
# snapshot of 114 MB of parquet added 200 MB to a run's peak RSS before these bounds.)
UPLOAD_BUFFER_BYTES = 16 * 2**20
MAX_UPLOAD_BATCH = 16
UPLOAD_PART_BYTES = 8 * 2**20  # S3's smallest part is 5 MiB
UPLOAD_PART_CONCURRENCY = 2


def _bytes_in_flight(size: int) -> int:
    """What one upload of a file of `size` bytes holds in memory at once."""
    if size < 2 * UPLOAD_PART_BYTES:
        return size
    return UPLOAD_PART_BYTES * UPLOAD_PART_CONCURRENCY


def upload_batch_size(sizes: Iterable[int]) -> int:
    """How many files to send at once so that their bytes fit UPLOAD_BUFFER_BYTES."""
    largest = max((_bytes_in_flight(size) for size in sizes), default=0)
    return max(1, min(MAX_UPLOAD_BATCH, UPLOAD_BUFFER_BYTES // max(largest, 1)))


class Backend(Protocol):
    """One object store's primitive calls on full store paths (`bucket/key` or a local path)."""

    conditional_writes: bool  # write_if is a real compare-and-swap

    def read(self, path: str) -> bytes: ...

    def write(self, path: str, data: bytes) -> None:
        """Atomic: readers see the old or the new bytes, never a part."""

    def version(self, path: str) -> str:
        """What write_if compares (an ETag, a digest); FileNotFoundError when missing."""

    def write_if(self, path: str, data: bytes, version: str | None) -> str | None:
        """Writes only if the object is at `version` (None: only if it does not exist);
        the new version, or None when another writer changed it first."""

    def list_names(self, path: str) -> list[str]:
        """Names directly under a prefix ([] when there is none)."""

    def exists(self, path: str) -> bool: ...

    def upload(self, pairs: Sequence[tuple[str, str]]) -> None:
        """(local file, store path) pairs."""

    def download(self, pairs: Sequence[tuple[str, str]]) -> None:
        """(store path, local file) pairs."""

    def delete(self, paths: Sequence[str]) -> None: ...

    def delete_tree(self, path: str) -> None:
        """Everything under a prefix; nothing to do when there is none."""

    def bucket_exists(self, bucket: str) -> bool: ...


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBackend:
    """A folder on a filesystem every attempt sees (a volume, or the laptop's disk)."""

    conditional_writes = True

    def read(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    def write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def version(self, path: str) -> str:
        return _digest(self.read(path))

    def write_if(self, path: str, data: bytes, version: str | None) -> str | None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            try:
                current: str | None = self.version(path)
            except FileNotFoundError:
                current = None
            if current != version:
                return None
            self.write(path, data)
        return _digest(data)

    def list_names(self, path: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(path) if ".tmp-" not in n)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def upload(self, pairs: Sequence[tuple[str, str]]) -> None:
        for local, remote in pairs:
            os.makedirs(os.path.dirname(remote), exist_ok=True)
            tmp = f"{remote}.tmp-{uuid.uuid4().hex}"
            shutil.copyfile(local, tmp)
            os.replace(tmp, remote)

    def download(self, pairs: Sequence[tuple[str, str]]) -> None:
        for remote, local in pairs:
            shutil.copyfile(remote, local)

    def delete(self, paths: Sequence[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def delete_tree(self, path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            self.delete([path])

    def bucket_exists(self, bucket: str) -> bool:
        return True  # a folder is made on first write


class FsspecBackend:
    """Any fsspec filesystem; no compare-and-swap."""

    conditional_writes = False

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def read(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(path))

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def version(self, path: str) -> str:
        return _digest(self.read(path))

    def write_if(self, path: str, data: bytes, version: str | None) -> str | None:
        raise NotImplementedError("no conditional writes on fsspec stores")

    def list_names(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def upload(self, pairs: Sequence[tuple[str, str]]) -> None:
        lpaths, rpaths = [p[0] for p in pairs], [p[1] for p in pairs]
        size = upload_batch_size(os.path.getsize(p) for p in lpaths)
        self.fs.put(lpaths, rpaths, batch_size=size)

    def download(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.fs.get([p[0] for p in pairs], [p[1] for p in pairs])

    def delete(self, paths: Sequence[str]) -> None:
        self.fs.rm(list(paths))

    def delete_tree(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def bucket_exists(self, bucket: str) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return "memory" in protocols or bool(self.fs.exists(bucket))
