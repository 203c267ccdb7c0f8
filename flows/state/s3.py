"""The state store on S3 and S3-compatible servers (AWS, SeaweedFS, MinIO), through obstore.

obstore (Rust's `object_store` behind a small Python module) rather than s3fs: measured here
in a run process that had dlt imported, s3fs with aiobotocore added about 40 MB of Python
objects (botocore's parsed endpoint and S3 models, aiohttp) and held 30 MB more while it
uploaded a 40 MB file; obstore adds about 2 MB and streams uploads in parts. Conditional
writes (`If-None-Match: *`, `If-Match: <etag>`) are native, which the lease needs.

Its HTTP runtime (tokio) must not be used across a fork: a child forked after this process
used the store would hang on its first call. `runtime_started()` tells the isolated attempt
to spawn instead of fork, and a process that inherited a started runtime refuses to use it.

Credentials come from dlt-style config (`STATE__CREDENTIALS__*` or `[state.credentials]`),
then the standard AWS variables, then AWS's own chain (web identity, container or instance
credentials), as obstore reads them. `AWS_CA_BUNDLE` adds a private CA to the trusted roots.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from flows.state.backends import UPLOAD_PART_BYTES, UPLOAD_PART_CONCURRENCY, upload_batch_size
from flows.state.errors import StateConfigError, StateStoreError

T = TypeVar("T")

# One layer of retries is the store's own (StateStore.call, a window of STATE__RETRY_WINDOW
# seconds): obstore's is kept short so a dead endpoint fails over to it within seconds.
CLIENT_OPTIONS: dict[str, Any] = {"connect_timeout": "5s", "timeout": "120s"}
RETRY_CONFIG: Any = {"max_retries": 2, "retry_timeout": timedelta(seconds=15)}
DOWNLOAD_CONCURRENCY = 8

_runtime_pid: int | None = None  # the process whose obstore runtime is running


def runtime_started() -> bool:
    """True when this process has used obstore: a fork of it must not use it again."""
    return _runtime_pid is not None


def _secret(key: str) -> str | None:
    """`state.credentials.<key>` through dlt's config providers (env, secrets.toml)."""
    import dlt

    value: Any = dlt.secrets.get(f"state.credentials.{key}")
    return str(value) if value else None


def s3_config() -> dict[str, Any]:
    """obstore's S3 settings from dlt-style config, then the standard AWS variables."""
    env = os.environ
    config: dict[str, Any] = {
        "access_key_id": _secret("aws_access_key_id") or env.get("AWS_ACCESS_KEY_ID"),
        "secret_access_key": _secret("aws_secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": _secret("aws_session_token") or env.get("AWS_SESSION_TOKEN"),
        "endpoint": _secret("endpoint_url")
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL"),
        "region": _secret("region_name")
        or env.get("AWS_DEFAULT_REGION")
        or env.get("AWS_REGION")
        or "us-east-1",
    }
    return {k: v for k, v in config.items() if v}


def ca_bundle() -> str | None:
    """The PEM of `AWS_CA_BUNDLE` (botocore's variable, for a store behind a private CA)."""
    path = os.environ.get("AWS_CA_BUNDLE")
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as err:
        raise StateConfigError(
            f"AWS_CA_BUNDLE = {path!r} cannot be read ({err.strerror}); point it at a PEM file "
            "of the CA that signed the S3 endpoint's certificate"
        ) from err


def _translate(err: Exception) -> Exception:
    """obstore's errors as the builtin families the store retries on or gives up on."""
    from obstore import exceptions as obs

    text = str(err).split("\n", 1)[0]
    if isinstance(err, FileNotFoundError | obs.NotFoundError):
        return FileNotFoundError(text)
    if isinstance(err, obs.PermissionDeniedError | obs.UnauthenticatedError):
        return PermissionError(text)
    if "NoSuchBucket" in str(err):
        return FileNotFoundError(text)
    if isinstance(err, obs.GenericError) and "status code: 4" in str(err):
        # the server understood and refused (not 408/429, which obstore retried already)
        return ValueError(text)
    if isinstance(err, obs.BaseError):
        return ConnectionError(text)  # network, timeouts, 5xx: another try may work
    return err


class S3Backend:
    """Store paths are `bucket/key`; one obstore client per bucket."""

    conditional_writes = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: Any = s3_config() if config is None else config
        self._stores: dict[str, Any] = {}

    def _split(self, path: str) -> tuple[Any, str]:
        bucket, _, key = path.partition("/")
        store = self._stores.get(bucket)
        if store is None:
            from obstore.store import S3Store

            endpoint = self.config.get("endpoint", "")
            options: Any = {**CLIENT_OPTIONS, "allow_http": endpoint.startswith("http://")}
            if ca := ca_bundle():
                options["root_certificate"] = ca  # added to the system's roots
            store = S3Store(
                bucket, config=self.config, client_options=options, retry_config=RETRY_CONFIG
            )
            self._stores[bucket] = store
        return store, key

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        global _runtime_pid
        pid = os.getpid()
        if _runtime_pid is not None and _runtime_pid != pid:
            raise StateStoreError(
                "this process was forked after its parent used the S3 state store, whose "
                "HTTP runtime does not survive a fork; start it with spawn instead"
            )
        _runtime_pid = pid
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            translated = _translate(err)
            if translated is err:
                raise
            raise translated from err

    # the backend operations ---------------------------------------------------------------

    def read(self, path: str) -> bytes:
        import obstore

        store, key = self._split(path)
        return self._call(lambda: bytes(obstore.get(store, key).bytes()))

    def write(self, path: str, data: bytes) -> None:
        import obstore

        store, key = self._split(path)
        self._call(obstore.put, store, key, data)

    def version(self, path: str) -> str:
        import obstore

        store, key = self._split(path)
        return str(self._call(obstore.head, store, key)["e_tag"])

    def write_if(self, path: str, data: bytes, version: str | None) -> str | None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, GenericError, PreconditionError

        def put(store: Any, key: str) -> str | None:
            mode: Any = "create" if version is None else {"e_tag": version}
            try:
                return str(obstore.put(store, key, data, mode=mode)["e_tag"])
            except (AlreadyExistsError, PreconditionError):
                return None  # another writer changed it first
            except GenericError as err:
                if "ConditionalRequestConflict" in str(err):  # AWS: a racing conditional write
                    return None
                raise

        return self._call(put, *self._split(path))

    def list_names(self, path: str) -> list[str]:
        import obstore

        store, key = self._split(path)
        listing = self._call(obstore.list_with_delimiter, store, key or None)
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in listing["common_prefixes"]]
        names += [o["path"].rsplit("/", 1)[-1] for o in listing["objects"]]
        return sorted(names)

    def exists(self, path: str) -> bool:
        try:
            self.version(path)
            return True
        except FileNotFoundError:
            return bool(self._keys_under(path, limit=1))

    def upload(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Files in parallel, as many as fit the upload buffer; each file in parts of
        UPLOAD_PART_BYTES, UPLOAD_PART_CONCURRENCY at a time, read from disk as they go."""
        import obstore

        def put(pair: tuple[str, str]) -> None:
            store, key = self._split(pair[1])
            self._call(
                obstore.put,
                store,
                key,
                Path(pair[0]),
                chunk_size=UPLOAD_PART_BYTES,
                max_concurrency=UPLOAD_PART_CONCURRENCY,
            )

        workers = upload_batch_size(os.path.getsize(local) for local, _ in pairs)
        self._parallel(put, pairs, workers)

    def download(self, pairs: Sequence[tuple[str, str]]) -> None:
        import obstore

        def fetch(store: Any, key: str, local: str) -> None:
            with open(local, "wb") as out:
                for chunk in obstore.get(store, key):  # streamed, never whole in memory
                    out.write(chunk)

        def get(pair: tuple[str, str]) -> None:
            store, key = self._split(pair[0])
            self._call(fetch, store, key, pair[1])

        self._parallel(get, pairs, DOWNLOAD_CONCURRENCY)

    def delete(self, paths: Sequence[str]) -> None:
        import obstore

        by_bucket: dict[str, list[str]] = {}
        for path in paths:
            bucket, _, key = path.partition("/")
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            store, _ = self._split(bucket + "/")
            self._call(obstore.delete, store, keys)

    def delete_tree(self, path: str) -> None:
        bucket = path.partition("/")[0]
        keys = self._keys_under(path)
        if keys:
            self.delete([f"{bucket}/{key}" for key in keys])

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._keys_under(bucket + "/", limit=1)
            return True
        except FileNotFoundError:
            return False

    # internals ------------------------------------------------------------------------------

    def _keys_under(self, path: str, limit: int | None = None) -> list[str]:
        import obstore

        def keys(store: Any, prefix: str | None) -> list[str]:
            found: list[str] = []
            for batch in obstore.list(store, prefix, chunk_size=limit or 1000):
                found += [o["path"] for o in batch]
                if limit and len(found) >= limit:
                    break
            return found

        store, key = self._split(path)
        return self._call(keys, store, key.rstrip("/") + "/" if key else None)

    @staticmethod
    def _parallel(
        fn: Callable[[tuple[str, str]], None], pairs: Sequence[tuple[str, str]], workers: int
    ) -> None:
        if len(pairs) == 1 or workers == 1:
            for pair in pairs:
                fn(pair)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(pairs))) as pool:
            for _ in pool.map(fn, pairs):  # the first failure is raised here
                pass
