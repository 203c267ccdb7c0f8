"""State store: dlt working state snapshotted to object storage, one writer per pipeline.

Knows nothing of Prefect. The runner drives it; `StateSession` is the entry point.
"""

from flows.state.errors import (
    CorruptSnapshotError,
    LeaseHeldError,
    LeaseLostError,
    SnapshotFailedError,
    StateStoreError,
    StoreUnreachableError,
)
from flows.state.holder import LeaseInfo
from flows.state.lease import Lease
from flows.state.manifest import FileEntry, Manifest
from flows.state.session import StateSession
from flows.state.store import StateStore, open_store

__all__ = [
    "CorruptSnapshotError",
    "FileEntry",
    "Lease",
    "LeaseHeldError",
    "LeaseInfo",
    "LeaseLostError",
    "Manifest",
    "SnapshotFailedError",
    "StateSession",
    "StateStore",
    "StateStoreError",
    "StoreUnreachableError",
    "open_store",
]
