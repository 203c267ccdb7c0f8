"""Errors of the state store: each names the store URL and what to do.

They join the platform's failure vocabulary (flows/errors.py): an unreachable store or a
held or lost lease is retryable, a corrupt snapshot or a refused URL is terminal.
"""

from __future__ import annotations

from flows.errors import (
    EXIT_CORRUPT,
    EXIT_LEASE,
    EXIT_UNREACHABLE,
    ConfigError,
    PlatformError,
    RetryableError,
    TerminalError,
)


class StateStoreError(PlatformError):
    """Base class: the state store could not do what was asked."""


class StateConfigError(StateStoreError, ConfigError):
    """The state store's settings are wrong (URL scheme, missing bucket, bad value)."""


class InvalidNameError(StateConfigError):
    """A pipeline name or a store path component that would reach outside the pipeline's own
    prefix (empty, `.`, `..`, absolute, a `/` in a name): refused before anything is touched."""


class StoreUnreachableError(StateStoreError, RetryableError):
    """The store did not answer within the retry window."""

    exit_code = EXIT_UNREACHABLE


class CorruptSnapshotError(StateStoreError, TerminalError):
    """A snapshot failed verification; nothing was restored and the store was not changed."""

    exit_code = EXIT_CORRUPT


class LeaseHeldError(StateStoreError, RetryableError):
    """Another run holds the pipeline's lease."""

    exit_code = EXIT_LEASE

    def __init__(self, message: str, holder: dict[str, object]) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseCorruptError(StateStoreError, RetryableError):
    """The lease object cannot be read: nobody can prove they hold it until it is unlocked."""

    exit_code = EXIT_LEASE


class LeaseLostError(StateStoreError, RetryableError):
    """This run no longer owns the lease (revoked, expired, taken over): it must not write."""

    exit_code = EXIT_LEASE


class SnapshotFailedError(StateStoreError, RetryableError):
    """A snapshot taken at a step boundary failed; the step's work is not yet durable."""
