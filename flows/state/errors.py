"""Errors of the state store: each names the store URL and what to do."""

from __future__ import annotations


class StateStoreError(Exception):
    """Base class: the state store could not do what was asked."""


class StoreUnreachableError(StateStoreError):
    """The store did not answer after the configured retries."""


class CorruptSnapshotError(StateStoreError):
    """A snapshot failed verification; nothing was restored and the store was not changed."""


class LeaseHeldError(StateStoreError):
    """Another run holds the pipeline's lease."""

    def __init__(self, message: str, holder: dict[str, object]) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLostError(StateStoreError):
    """This run no longer owns the lease: a newer writer took over, so it must not write."""


class SnapshotFailedError(StateStoreError):
    """A snapshot taken at a step boundary failed; the step's work is not yet durable."""
