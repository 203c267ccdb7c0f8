"""Snapshot and restore of a dlt working dir, content-addressed so uploads are incremental.

Bucket layout under `<store>/<pipeline_name>/`:
  blobs/<sha256>                 file contents, written once, shared by generations
  manifests/<generation>.json    the file list of one snapshot, written after its blobs
  lease.json                     the single-writer lease (see lease.py)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flows.errors import DiskFullError, is_disk_full
from flows.state.errors import CorruptSnapshotError, LeaseLostError
from flows.state.manifest import FileEntry, Manifest
from flows.state.names import validate_pipeline_name
from flows.state.store import StateStore

# Folders dlt expects to exist once its storages were initialized (their version files are
# part of the snapshot, so dlt will not create them again on a fresh disk).
STORAGE_DIRS = ("load/loaded", "load/new", "load/normalized", "normalize/extracted")

# What dlt needs to resume. Temporary folders (`normalize/<random>`, `load/new`), the trace
# and archived packages (`load/loaded`) are left out on purpose.
MANAGED_PATHS = (
    "state.json",
    "schemas",
    "normalize/.version",
    "normalize/extracted",
    "load/.version",
    "load/normalized",
)


@dataclass(frozen=True)
class PipelineLayout:
    """Where one pipeline's snapshots live in the store."""

    store: StateStore
    pipeline_name: str

    def __post_init__(self) -> None:
        validate_pipeline_name(self.pipeline_name)

    def path(self, *parts: str) -> str:
        return self.store.path(self.pipeline_name, *parts)

    @property
    def lease_path(self) -> str:
        return self.path("lease.json")

    def blob_path(self, sha256: str) -> str:
        return self.path("blobs", sha256)

    def manifest_path(self, generation: int) -> str:
        return self.path("manifests", f"{generation:012d}.json")

    def generations(self) -> list[int]:
        names = self.store.list_names(self.path("manifests"))
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def latest_generation(self) -> int:
        gens = self.generations()
        return gens[-1] if gens else 0

    def read_manifest(self, generation: int) -> Manifest:
        source = self.store.url_of(self.pipeline_name, "manifests", f"{generation:012d}.json")
        data = self.store.read_bytes(self.manifest_path(generation))
        if data is None:
            raise CorruptSnapshotError(f"manifest {source} does not exist")
        return Manifest.from_json(data, source, self.pipeline_name)

    def blob_names(self) -> set[str]:
        return set(self.store.list_names(self.path("blobs")))


@dataclass
class HashCache:
    """sha256 by (device, inode, size, mtime): a file dlt renamed is not hashed again."""

    _by_key: dict[tuple[int, int, int, int], str] = field(default_factory=dict)

    def sha256(self, path: str, stat: os.stat_result) -> str:
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        digest = self._by_key.get(key)
        if digest is None:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            self._by_key[key] = digest
        return digest


def scan_working_dir(
    working_dir: Path, dirs: list[str] | None = None
) -> dict[str, tuple[str, os.stat_result]]:
    """Managed files of a working dir: relative posix path -> (absolute path, stat).

    Directories (dlt needs its empty job folders) are appended to `dirs` when given.
    """
    found: dict[str, tuple[str, os.stat_result]] = {}
    for managed in MANAGED_PATHS:
        top = working_dir / managed
        if top.is_file():
            found[managed] = (str(top), top.stat())
            continue
        for dirpath, _dirs, files in os.walk(top):
            if dirs is not None:
                dirs.append(Path(dirpath).relative_to(working_dir).as_posix())
            for name in files:
                if ".tmp-" in name:
                    continue
                absolute = os.path.join(dirpath, name)
                try:
                    stat = os.stat(absolute)
                except FileNotFoundError:  # moved by dlt while we walked
                    continue
                found[Path(absolute).relative_to(working_dir).as_posix()] = (absolute, stat)
    return found


def describe_working_dir(
    working_dir: Path, cache: HashCache
) -> tuple[list[FileEntry], list[str], dict[str, str]]:
    """Manifest entries and directories of a working dir, and a local path for each blob."""
    entries: list[FileEntry] = []
    dirs: list[str] = []
    sources: dict[str, str] = {}
    for rel, (absolute, stat) in sorted(scan_working_dir(working_dir, dirs).items()):
        digest = cache.sha256(absolute, stat)
        entries.append(FileEntry(rel, stat.st_size, digest))
        sources.setdefault(digest, absolute)
    return entries, sorted(dirs), sources


def publish_snapshot(
    layout: PipelineLayout,
    manifest: Manifest,
    sources: dict[str, str],
    known_blobs: set[str],
    staging: Path,
    before_commit: Callable[[], None] = lambda: None,
) -> int:
    """Uploads the blobs the store lacks, then the manifest. Returns bytes uploaded.

    The blobs are hard-linked into `staging` first (same filesystem, no copy), so dlt may
    move or delete its files while the upload runs. A file gone before it was linked
    raises FileNotFoundError and nothing is published. `before_commit` runs right before
    the manifest is written (the lease's deadline check). Where the store has conditional
    writes, a manifest is created only if its generation does not exist yet, so two writers
    can never publish the same generation.
    """
    missing = {d: p for d, p in sources.items() if d not in known_blobs}
    staging.mkdir(parents=True, exist_ok=True)
    try:
        staged: dict[str, str] = {}
        for digest, path in missing.items():
            target = staging / digest
            try:
                os.link(path, target)
            except FileExistsError:
                pass
            except OSError as err:
                if isinstance(err, FileNotFoundError):
                    raise
                with local_disk(staging, manifest.total_bytes, "staging a snapshot"):
                    shutil.copyfile(path, target)  # another filesystem
            staged[digest] = str(target)
        layout.store.put_files([(local, layout.blob_path(d)) for d, local in staged.items()])
        known_blobs.update(staged)
        before_commit()
        path = layout.manifest_path(manifest.generation)
        data = manifest.to_json()
        if not layout.store.conditional_writes:
            layout.store.write_bytes(path, data)
        elif layout.store.replace_if(path, data, None) is None and not _is_own_write(
            layout, path, data
        ):
            raise LeaseLostError(
                f"{layout.store.url_of(layout.pipeline_name)} already has generation "
                f"{manifest.generation}: another writer published it, refusing to overwrite"
            )
        return sum(os.path.getsize(p) for p in staged.values())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_own_write(layout: PipelineLayout, path: str, data: bytes) -> bool:
    """True when the object a create-only write found is exactly `data`: this writer's own
    write, committed by the store although its reply was lost (the store's retry of it was
    then refused). A manifest carries its writer's lease token and creation time, so no other
    writer's manifest has the same bytes."""
    return layout.store.read_bytes(path) == data


def restore_snapshot(
    layout: PipelineLayout, manifest: Manifest, working_dir: Path, cache: HashCache
) -> int:
    """Makes the managed part of `working_dir` equal to the snapshot. Returns bytes downloaded.

    Everything is fetched and verified in a side folder first; the working dir is only
    touched once every checksum matched, and the store is never written.
    """
    staging = working_dir.parent / f".restore-{layout.pipeline_name}-{uuid.uuid4().hex[:8]}"
    what = f"restoring generation {manifest.generation} of {layout.pipeline_name!r}"
    local = scan_working_dir(working_dir) if working_dir.exists() else {}
    try:
        with local_disk(working_dir.parent, manifest.total_bytes, what):
            working_dir.parent.mkdir(parents=True, exist_ok=True)
            downloads, needed = _stage_local_copies(layout, manifest, staging, local, cache)
            require_free_space(working_dir.parent, needed, what)
        try:
            with local_disk(working_dir.parent, needed, what):
                layout.store.get_files(downloads)
        except FileNotFoundError as err:
            raise CorruptSnapshotError(
                f"snapshot generation {manifest.generation} of {layout.pipeline_name!r} in "
                f"{layout.store.url} is missing a blob: {err}"
            ) from err
        for entry in manifest.files:
            path = staging / entry.path
            size = path.stat().st_size if path.exists() else -1
            digest = cache.sha256(str(path), path.stat()) if size == entry.size else ""
            if size != entry.size or digest != entry.sha256:
                raise CorruptSnapshotError(
                    f"snapshot generation {manifest.generation} of {layout.pipeline_name!r} in "
                    f"{layout.store.url} is corrupt: {entry.path} has size {size} and sha256 "
                    f"{digest[:12] or '-'}, manifest says {entry.size} and {entry.sha256[:12]}"
                )
        fetched = sum(os.path.getsize(local_path) for _r, local_path in downloads)
        _swap_managed(staging, working_dir)
        return fetched
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage_local_copies(
    layout: PipelineLayout,
    manifest: Manifest,
    staging: Path,
    local: dict[str, tuple[str, os.stat_result]],
    cache: HashCache,
) -> tuple[list[tuple[str, str]], int]:
    """Makes the snapshot's folders in `staging` and links the files the working dir already
    has; returns what is left to download (store path, local path) and its bytes."""
    for directory in manifest.dirs:
        (staging / directory).mkdir(parents=True, exist_ok=True)
    downloads: list[tuple[str, str]] = []
    needed = 0
    for entry in manifest.files:
        target = staging / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        have = local.get(entry.path)
        if have and have[1].st_size == entry.size and cache.sha256(*have) == entry.sha256:
            os.link(have[0], target)
        else:
            downloads.append((layout.blob_path(entry.sha256), str(target)))
            needed += entry.size
    return downloads, needed


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuses at once, before a byte is written, when `folder`'s filesystem has less room
    than `needed`: a full disk found halfway through a download costs the download."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DiskFullError(_disk_full_message(folder, needed, what, f"{free:,} bytes free"))


@contextlib.contextmanager
def local_disk(folder: Path, needed: int, what: str) -> Iterator[None]:
    """Names a full local disk (ENOSPC, EDQUOT, by errno) for what it is: DiskFullError with
    the folder and the bytes needed, never a store failure to retry."""
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise DiskFullError(_disk_full_message(folder, needed, what, str(err))) from err


def _disk_full_message(folder: Path, needed: int, what: str, detail: str) -> str:
    return (
        f"local disk full: {what} needs {needed:,} bytes in {folder} ({detail}); give the "
        "pod more ephemeral storage, or point --pipelines-dir (PIPELINES_DIR) at a bigger "
        "volume"
    )


def _swap_managed(staging: Path, working_dir: Path) -> None:
    working_dir.mkdir(parents=True, exist_ok=True)
    for managed in MANAGED_PATHS:
        current, incoming = working_dir / managed, staging / managed
        if current.is_dir():
            shutil.rmtree(current)
        elif current.exists():
            current.unlink()
        if incoming.exists():
            current.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, current)
    for folder in STORAGE_DIRS:
        (working_dir / folder).mkdir(parents=True, exist_ok=True)


def collect_garbage(layout: PipelineLayout, keep: int) -> tuple[int, int]:
    """Keeps the newest `keep` generations and the blobs they use.

    Returns how many manifests and blobs were deleted.
    """
    generations = layout.generations()
    drop = generations[:-keep] if keep > 0 else []
    kept = [layout.read_manifest(g) for g in generations[len(drop) :]]
    referenced = {f.sha256 for m in kept for f in m.files}
    orphaned = sorted(layout.blob_names() - referenced)
    layout.store.remove([layout.manifest_path(g) for g in drop])
    layout.store.remove([layout.blob_path(b) for b in orphaned])
    return len(drop), len(orphaned)
