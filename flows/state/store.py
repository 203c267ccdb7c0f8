"""Object storage access for the state store: one fsspec filesystem, every call retried.

The store URL picks the backend (`file://`, `s3://bucket/prefix`, `gs://`, `az://` with their
fsspec extras). S3 credentials come from dlt-style config (`STATE__CREDENTIALS__*`, or the
`[state.credentials]` section of secrets.toml) and fall back to the standard `AWS_*` variables.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import fsspec
import tenacity
from fsspec import AbstractFileSystem

from flows.errors import PERMANENT_IO_ERRORS, is_transient_io
from flows.state.errors import StateConfigError, StateStoreError, StoreUnreachableError

T = TypeVar("T")

# s3fs reads every file under twice its part size (50 MiB by default) whole before sending
# it, sends a bigger one 10 parts at once, and fsspec sends up to a few hundred files at
# once: a snapshot of 114 MB of parquet added 200 MB to the peak RSS of a run, and load
# files of 500,000 rows (about 40 MB each) added 50 MB to the cgroup peak of `flows run`.
# Uploads go in batches that hold at most UPLOAD_BUFFER_BYTES (and at least 1 file); a file
# of two parts or more goes as a multipart upload, UPLOAD_PART_CONCURRENCY parts at a time.
UPLOAD_BUFFER_BYTES = 16 * 2**20
MAX_UPLOAD_BATCH = 16
UPLOAD_PART_BYTES = 8 * 2**20  # S3's smallest part is 5 MiB
UPLOAD_PART_CONCURRENCY = 2


def _bytes_in_flight(size: int) -> int:
    """What s3fs holds in memory while it sends one file of `size` bytes."""
    if size < 2 * UPLOAD_PART_BYTES:
        return size
    return UPLOAD_PART_BYTES * UPLOAD_PART_CONCURRENCY


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


def _secret(key: str) -> str | None:
    """Reads `state.credentials.<key>` through dlt's config providers (env, secrets.toml)."""
    import dlt

    value: Any = dlt.secrets.get(f"state.credentials.{key}")
    return str(value) if value else None


def s3_storage_options() -> dict[str, Any]:
    """s3fs options from dlt-style config, then the standard AWS variables."""
    env = os.environ
    key = _secret("aws_access_key_id") or env.get("AWS_ACCESS_KEY_ID")
    secret = _secret("aws_secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY")
    endpoint = (
        _secret("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    )
    region = _secret("region_name") or env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    client_kwargs: dict[str, Any] = {"region_name": region or "us-east-1"}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    options: dict[str, Any] = {
        "client_kwargs": client_kwargs,
        # one layer of retries (ours); fail fast on a dead endpoint instead of botocore's 60 s
        "config_kwargs": {
            "connect_timeout": 5,
            "read_timeout": 120,
            "retries": {"max_attempts": 2},
        },
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }
    if key and secret:
        options["key"], options["secret"] = key, secret
    return options


def upload_batch_size(sizes: Iterable[int]) -> int:
    """How many files to send at once so that their bytes fit UPLOAD_BUFFER_BYTES."""
    largest = max((_bytes_in_flight(size) for size in sizes), default=0)
    return max(1, min(MAX_UPLOAD_BATCH, UPLOAD_BUFFER_BYTES // max(largest, 1)))


# Optional imports of the S3 stack that the store never uses: aiobotocore imports httpx for its
# other HTTP backend (and httpx its command line: click, rich, pygments), botocore imports
# pyOpenSSL only to take the standard library's SSLContext back from it. Measured here, with
# dlt imported: 9.5 MB of the 40 MB that an S3 client adds to the run's process.
UNUSED_S3_IMPORTS = ("httpx", "OpenSSL")


def _import_s3fs() -> None:
    """Imports s3fs with UNUSED_S3_IMPORTS hidden, unless something imported them already:
    each library falls back as where they are not installed, and they import normally later.
    """
    if "s3fs" in sys.modules:
        return
    hidden = [name for name in UNUSED_S3_IMPORTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import s3fs  # noqa: F401
    finally:
        for name in hidden:
            sys.modules.pop(name, None)


def _precondition_failed(err: BaseException) -> bool:
    """An S3 412 (or AWS's 409 for a racing conditional write), as s3fs translated it."""
    cause = err.__cause__
    response = getattr(cause, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or (
        response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
    )


class StateStore:
    """Paths under one root URL, with retried primitive operations."""

    def __init__(
        self, url: str, fs: AbstractFileSystem, root: str, retry: RetrySettings | None = None
    ) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.retry = retry or RetrySettings()
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self._protocols = protocols
        self.is_local = "file" in protocols
        # compare-and-swap for the lease: S3's If-Match / If-None-Match (AWS, SeaweedFS,
        # MinIO) or a file lock on a local store; other backends fall back to
        # write-then-confirm (lease.py)
        self.conditional_writes = self.is_local or "s3" in protocols

    def with_retry(self, retry: RetrySettings) -> StateStore:
        """The same store with other retry settings (the lease heartbeat gives up sooner)."""
        return StateStore(self.url, self.fs, self.root, retry)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def url_for(self, path: str) -> str:
        """The URL of a full store path (as `path()` returns it)."""
        return self.url_of(path[len(self.root) :] if path.startswith(self.root) else path)

    def url_of(self, *parts: str) -> str:
        return "/".join([self.url.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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

    # primitive operations -------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            return self.call(f"read {path}", self.fs.cat_file, path)
        except FileNotFoundError:
            return None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Writes an object atomically: readers see the old or the new bytes, never a part."""
        if self.is_local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            self.call(f"mkdir for {path}", self.fs.makedirs, self.fs._parent(path), exist_ok=True)
            self.call(f"write {path}", self.fs.pipe_file, tmp, data)
            self.call(f"commit {path}", os.replace, tmp, path)
        else:
            self.call(f"write {path}", self.fs.pipe_file, path, data)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and the version that `replace_if` compares (None: no object).

        The version is read first: if the object changes before its bytes are read, the
        version is already stale and `replace_if` refuses, never the other way round.
        """
        if self.is_local:
            data = self.read_bytes(path)
            return data, None if data is None else hashlib.sha256(data).hexdigest()
        bucket, key = path.split("/", 1)
        try:
            head = self.call(f"stat {path}", self.fs.call_s3, "head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None, None
        data = self.read_bytes(path)
        return data, None if data is None else str(head["ETag"])

    def replace_if(self, path: str, data: bytes, version: str | None) -> str | None:
        """Writes `data` only if the object is still at `version` (None: only if it does not
        exist). Returns the new version, or None when another writer changed it first."""
        if not self.conditional_writes:
            raise StateStoreError(f"state store {self.url} has no conditional writes")
        if self.is_local:
            return self._replace_local_if(path, data, version)
        bucket, key = path.split("/", 1)
        condition = {"IfMatch": version} if version else {"IfNoneMatch": "*"}

        def put() -> str | None:
            try:
                response = self.fs.call_s3(
                    "put_object", Bucket=bucket, Key=key, Body=data, **condition
                )
            except OSError as err:
                if _precondition_failed(err):
                    return None
                raise
            self.fs.invalidate_cache(path)
            return str(response["ETag"])

        return self.call(f"write {path} if unchanged", put)

    def _replace_local_if(self, path: str, data: bytes, version: str | None) -> str | None:
        self.call(f"mkdir for {path}", self.fs.makedirs, self.fs._parent(path), exist_ok=True)
        with open(f"{path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            current = self.read_bytes(path)
            if (None if current is None else hashlib.sha256(current).hexdigest()) != version:
                return None
            self.write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    def list_names(self, path: str) -> list[str]:
        """Names directly under a prefix ([] when there is none)."""
        try:
            entries = self.call(f"list {path}", self.fs.ls, path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def exists(self, path: str) -> bool:
        return bool(self.call(f"stat {path}", self.fs.exists, path))

    def put_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Uploads local files; the backend runs them concurrently."""
        if not pairs:
            return
        if self.is_local:
            for local, remote in pairs:
                tmp = f"{remote}.tmp-{uuid.uuid4().hex}"
                self.call(f"mkdir {remote}", self.fs.makedirs, self.fs._parent(remote), True)
                self.call(f"upload {remote}", self.fs.put_file, local, tmp)
                self.call(f"commit {remote}", os.replace, tmp, remote)
            return
        lpaths, rpaths = [p[0] for p in pairs], [p[1] for p in pairs]
        self.call(
            f"upload {len(pairs)} files",
            self.fs.put,
            lpaths,
            rpaths,
            batch_size=upload_batch_size(os.path.getsize(p) for p in lpaths),
            chunksize=UPLOAD_PART_BYTES,
            max_concurrency=UPLOAD_PART_CONCURRENCY,
        )

    def get_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Downloads objects to local paths (remote, local)."""
        if not pairs:
            return
        rpaths, lpaths = [p[0] for p in pairs], [p[1] for p in pairs]
        self.call(f"download {len(pairs)} files", self.fs.get, rpaths, lpaths)

    def remove(self, paths: Sequence[str]) -> None:
        if paths:
            self.call(f"delete {len(paths)} objects", self.fs.rm, list(paths))

    def remove_tree(self, path: str) -> None:
        if self.exists(path):
            self.call(f"delete {path}", self.fs.rm, path, recursive=True)

    def check_bucket(self) -> None:
        """Refuses a missing bucket before anything is written: some S3 servers create one on
        first write, so a typo in the URL would otherwise scatter state into a new bucket."""
        if self.is_local or "memory" in self._protocols:
            return
        bucket = self.root.split("/", 1)[0]
        try:
            if "s3" in self._protocols:
                self.call(f"stat bucket {bucket}", self.fs.call_s3, "head_bucket", Bucket=bucket)
                return
            if self.call(f"stat bucket {bucket}", self.fs.exists, bucket):
                return
        except FileNotFoundError:
            pass
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


# Schemes whose objects outlive the process, with the fsspec protocol that serves them.
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
        return StateStore(f"file://{root}", fsspec.filesystem("file"), root, retry)
    if not parsed.netloc:
        raise StateConfigError(f"state store URL {url!r} ({origin}) names no bucket")
    options = s3_storage_options() if scheme in ("s3", "s3a") else {}
    protocol = {**DURABLE_SCHEMES, **EPHEMERAL_SCHEMES}[scheme]
    try:
        if protocol == "s3":
            _import_s3fs()
        fs = fsspec.filesystem(protocol, **options)
    except (ImportError, ValueError, TypeError) as err:
        raise StateConfigError(
            f"state store {url} ({origin}): no filesystem for {scheme}:// ({err}); install "
            "its fsspec extra (gcsfs, adlfs)"
        ) from err
    root = f"{parsed.netloc}{parsed.path}".rstrip("/")
    return StateStore(url.rstrip("/"), fs, root, retry)
