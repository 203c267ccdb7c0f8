"""The snapshot manifest: written last, so a snapshot exists only once all its files do."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from flows.state.errors import CorruptSnapshotError
from flows.state.names import is_relative_path

FORMAT = "flows.state/1"
# a blob's name in the store, checked before any path is made of it
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileEntry:
    """One file of the working dir, by path relative to it; the blob is named by sha256."""

    path: str
    size: int
    sha256: str


@dataclass
class Manifest:
    pipeline_name: str
    generation: int
    step: str
    owner: str
    files: list[FileEntry]
    dirs: list[str] = field(default_factory=list)
    # the token of the lease its writer held: a writer recognises its own committed manifest
    # (a write whose reply was lost) by it
    lease_token: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    format: str = FORMAT
    # the run id whose extract this snapshot holds committed: a retry of that run resumes
    # what is pending and does not extract again
    extracted_by: str | None = None
    # what the run's checkpointed extract committed so far (flows/durable/segments.py:
    # segments, rows); empty once a run finished its extract
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def load_ids(self, folder: str) -> list[str]:
        """Load packages present under `normalize/extracted` or `load/normalized`."""
        prefix = folder.rstrip("/") + "/"
        ids = {
            f.path[len(prefix) :].split("/", 1)[0] for f in self.files if f.path.startswith(prefix)
        }
        return sorted(i for i in ids if i and not i.startswith("."))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, source: str, expected_pipeline: str) -> Manifest:
        """Parses and checks a manifest; anything off raises `CorruptSnapshotError`."""
        try:
            raw = json.loads(data)
            files = [
                FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in raw["files"]
            ]
            manifest = cls(
                pipeline_name=str(raw["pipeline_name"]),
                generation=int(raw["generation"]),
                step=str(raw.get("step", "")),
                owner=str(raw.get("owner", "")),
                files=files,
                dirs=[str(d) for d in raw.get("dirs", [])],
                lease_token=str(raw.get("lease_token", "")),
                created_at=str(raw.get("created_at", "")),
                format=str(raw.get("format", "")),
                extracted_by=None if raw.get("extracted_by") is None else str(raw["extracted_by"]),
                progress=dict(raw.get("progress") or {}),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CorruptSnapshotError(f"manifest {source} is not readable: {err}") from err
        if manifest.format != FORMAT:
            raise CorruptSnapshotError(
                f"manifest {source} has format {manifest.format!r}, expected {FORMAT!r}"
            )
        if manifest.pipeline_name != expected_pipeline:
            raise CorruptSnapshotError(
                f"manifest {source} belongs to pipeline {manifest.pipeline_name!r}, "
                f"not {expected_pipeline!r}: refusing to restore a foreign snapshot"
            )
        for path in [f.path for f in files] + manifest.dirs:
            if not is_relative_path(path):
                raise CorruptSnapshotError(
                    f"manifest {source} has an unsafe path {path!r}: file and folder names "
                    "must be relative, with no empty, `.` or `..` components"
                )
        for entry in files:
            if not SHA256.fullmatch(entry.sha256) or entry.size < 0:
                raise CorruptSnapshotError(
                    f"manifest {source} has a bad entry for {entry.path!r}: sha256 "
                    f"{entry.sha256[:80]!r} (64 lowercase hex characters expected), "
                    f"size {entry.size}"
                )
        return manifest
