"""The state store: paths under one root URL on an object store, every call retried.

The store URL picks the backend (backends.py): `s3://bucket/prefix` (obstore, s3.py),
`file://` folders, `gs://` and `az://` through fsspec with their extras. S3 credentials come
from dlt-style config (`STATE__CREDENTIALS__*`, or the `[state.credentials]` section of
secrets.toml) and fall back to the standard `AWS_*` variables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import tenacity

from flows.errors import PERMANENT_IO_ERRORS, is_transient_io
from flows.state.backends import Backend, FsspecBackend, LocalBackend
from flows.state.errors import (
    InvalidNameError,
    StateConfigError,
    StateStoreError,
    StoreUnreachableError,
)
from flows.state.names import is_relative_path

T = TypeVar("T")


@dataclass(frozen=True)
class RetrySettings:
    """How long the store keeps trying before it reports the store as unreachable: calls are
    retried with exponential backoff and jitter for up to `window` seconds (and at most
    `attempts` tries, when set), so an outage shorter than the window only delays a run."""

    attempts: int | None = None
    initial_wait: float = 0.5
    max_wait: float = 8.0
    window: float = 60.0

    @classmethod
    def from_config(cls) -> RetrySettings:
        from flows.state.config import state_config

        config = state_config()
        return cls(
            attempts=config.retry_attempts,
            initial_wait=config.retry_initial_wait,
            max_wait=config.retry_max_wait,
            window=config.retry_window,
        )

    def stop(self) -> tenacity.stop.stop_base:
        stop: tenacity.stop.stop_base = tenacity.stop_after_delay(self.window)
        if self.attempts:
            stop = stop | tenacity.stop_after_attempt(self.attempts)
        return stop

    def describe(self) -> str:
        tries = f", at most {self.attempts} tries" if self.attempts else ""
        return f"retried for {self.window:g} s{tries}"


class StateStore:
    """Paths under one root URL, with retried primitive operations."""

    def __init__(
        self, url: str, backend: Backend, root: str, retry: RetrySettings | None = None
    ) -> None:
        self.url = url
        self.backend = backend
        self.root = root.rstrip("/")
        self.retry = retry or RetrySettings()

    @property
    def conditional_writes(self) -> bool:
        """Compare-and-swap for the lease: S3's If-Match / If-None-Match (AWS, SeaweedFS,
        MinIO) or a file lock on a local store; other backends fall back to
        write-then-confirm (lease.py)."""
        return self.backend.conditional_writes

    def with_retry(self, retry: RetrySettings) -> StateStore:
        """The same store with other retry settings (the lease heartbeat gives up sooner)."""
        return StateStore(self.url, self.backend, self.root, retry)

    def path(self, *parts: str) -> str:
        """The full store path of `parts` under the root (the root itself without parts).

        Every `/`-separated component must be a plain name: an empty, `.` or `..` component
        or an absolute part is refused (InvalidNameError), so no path built here reaches
        outside the root or a pipeline's prefix, whatever a name or a manifest held.
        """
        for part in parts:
            if not is_relative_path(part):
                raise InvalidNameError(
                    f"state store {self.url}: path component {part!r} refused: store paths "
                    "are made of plain names (no empty, `.`, `..` or absolute components)"
                )
        return "/".join([self.root, *parts])

    def url_for(self, path: str) -> str:
        """The URL of a full store path (as `path()` returns it)."""
        return self.url_of(path[len(self.root) :] if path.startswith(self.root) else path)

    def url_of(self, *parts: str) -> str:
        return "/".join([self.url.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def call(self, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Runs one store operation with backoff; a final failure names the URL and the cause."""
        retrying = tenacity.Retrying(
            stop=self.retry.stop(),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.retry.initial_wait, max=self.retry.max_wait
            ),
            retry=tenacity.retry_if_exception(is_transient_io),
            reraise=False,
        )
        try:
            return retrying(fn, *args, **kwargs)
        except tenacity.RetryError as err:
            cause = err.last_attempt.exception()
            raise StoreUnreachableError(
                f"state store {self.url} unreachable: {what} failed "
                f"({self.retry.describe()}): {type(cause).__name__}: {cause}"
            ) from cause
        except PERMANENT_IO_ERRORS as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise StateStoreError(
                f"state store {self.url}: {what} refused: {type(err).__name__}: {err}"
            ) from err

    # operations -----------------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            return self.call(f"read {path}", self.backend.read, path)
        except FileNotFoundError:
            return None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Writes an object atomically: readers see the old or the new bytes, never a part."""
        self.call(f"write {path}", self.backend.write, path, data)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and the version that `replace_if` compares (None: no object).

        The version is read first: if the object changes before its bytes are read, the
        version is already stale and `replace_if` refuses, never the other way round.
        """
        try:
            version = self.call(f"stat {path}", self.backend.version, path)
        except FileNotFoundError:
            return None, None
        data = self.read_bytes(path)
        return data, None if data is None else version

    def replace_if(self, path: str, data: bytes, version: str | None) -> str | None:
        """Writes `data` only if the object is still at `version` (None: only if it does not
        exist). Returns the new version, or None when another writer changed it first."""
        if not self.conditional_writes:
            raise StateStoreError(f"state store {self.url} has no conditional writes")
        return self.call(f"write {path} if unchanged", self.backend.write_if, path, data, version)

    def list_names(self, path: str) -> list[str]:
        """Names directly under a prefix ([] when there is none)."""
        return self.call(f"list {path}", self.backend.list_names, path)

    def exists(self, path: str) -> bool:
        return self.call(f"stat {path}", self.backend.exists, path)

    def put_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Uploads local files (local, store path), a bounded number of bytes at once."""
        if pairs:
            self.call(f"upload {len(pairs)} files", self.backend.upload, pairs)

    def get_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Downloads objects to local paths (store path, local)."""
        if pairs:
            self.call(f"download {len(pairs)} files", self.backend.download, pairs)

    def remove(self, paths: Sequence[str]) -> None:
        if paths:
            self.call(f"delete {len(paths)} objects", self.backend.delete, paths)

    def remove_tree(self, path: str) -> None:
        self.call(f"delete {path}", self.backend.delete_tree, path)

    def check_bucket(self) -> None:
        """Refuses a missing bucket before anything is written: some S3 servers create one on
        first write, so a typo in the URL would otherwise scatter state into a new bucket."""
        bucket = self.root.split("/", 1)[0]
        if self.call(f"stat bucket {bucket}", self.backend.bucket_exists, bucket):
            return
        raise StateConfigError(
            f"state store {self.url}: bucket {bucket!r} does not exist (or these credentials "
            "cannot see it); create it or fix the state URL (--state-url or STATE__URL). "
            "Nothing was written."
        )

    def check_writable(self) -> None:
        """Writes and deletes a probe object: proves the URL, credentials and bucket work."""
        self.check_bucket()
        probe = self.path(f".probe-{uuid.uuid4().hex}")
        self.write_bytes(probe, b"ok")
        self.remove([probe])


# Schemes whose objects outlive the process, with the protocol that serves them.
DURABLE_SCHEMES = {
    "file": "file",
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "abfs",
    "abfss": "abfs",
}
EPHEMERAL_SCHEMES = {"memory": "memory"}


def open_store(
    url: str, retry: RetrySettings | None = None, origin: str = "STATE__URL"
) -> StateStore:
    """Opens the store behind a URL such as `file:///data/state` or `s3://bucket/prefix`.

    Refuses, naming `origin` (where the URL came from), a scheme that is not durable object
    storage: `memory://` only with STATE__ALLOW_EPHEMERAL=true (tests).
    """
    parsed = urlparse(url)
    scheme = (parsed.scheme or "file").lower()
    if scheme in EPHEMERAL_SCHEMES:
        from flows.state.config import state_config

        if not state_config().allow_ephemeral:
            raise StateConfigError(
                f"state store URL {url!r} ({origin}) keeps nothing beyond this process; use "
                "s3://, gs://, az:// or file://, or set STATE__ALLOW_EPHEMERAL=true in tests"
            )
    elif scheme not in DURABLE_SCHEMES:
        raise StateConfigError(
            f"state store URL {url!r} ({origin}): scheme {scheme}:// is not supported; use "
            f"one of {', '.join(s + '://' for s in ('s3', 'gs', 'az', 'file'))}"
        )
    retry = retry or RetrySettings.from_config()
    if scheme == "file":
        root = os.path.abspath(parsed.path if parsed.scheme else url)
        return StateStore(f"file://{root}", LocalBackend(), root, retry)
    if not parsed.netloc:
        raise StateConfigError(f"state store URL {url!r} ({origin}) names no bucket")
    root = f"{parsed.netloc}{parsed.path}".rstrip("/")
    return StateStore(url.rstrip("/"), _backend(url, scheme, origin), root, retry)


def _backend(url: str, scheme: str, origin: str) -> Backend:
    protocol = {**DURABLE_SCHEMES, **EPHEMERAL_SCHEMES}[scheme]
    if protocol == "s3":
        from flows.state.s3 import S3Backend

        return S3Backend()
    try:
        import fsspec

        return FsspecBackend(fsspec.filesystem(protocol))
    except (ImportError, ValueError, TypeError) as err:
        raise StateConfigError(
            f"state store {url} ({origin}): no filesystem for {scheme}:// ({err}); install "
            "its fsspec extra (gcsfs, adlfs)"
        ) from err
