"""What went wrong, and whether another attempt can fix it: one vocabulary for the platform.

dlt already splits its errors into `TerminalException` (bad config, bad credentials,
contract violations: no retry helps) and `TransientException` (network, a busy database).
The platform's own errors join those two families, so one question, `is_terminal`, serves
the runner's in-process retries, Prefect's retry condition and the CLI's exit codes.

Exit codes (the `flows` CLI and a task attempt's child process):
  0 success   1 failure   2 bad input or config (terminal)   3 the lease is held or was lost
  4 corrupt or foreign snapshot (terminal)   5 state store unreachable (retryable)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from dlt.common.exceptions import TerminalException, TransientException
from dlt.common.schema.exceptions import DataValidationError
from dlt.pipeline.exceptions import PipelineStepFailed

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_LEASE = 3
EXIT_CORRUPT = 4
EXIT_UNREACHABLE = 5


class PlatformError(Exception):
    """Base of the platform's own errors; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_FAILURE


class ConfigError(PlatformError, TerminalException):
    """Bad input: a setting, an argument or a declaration. The message names where it came
    from (the env var, the config file, the option) and what is accepted. Never retried."""

    exit_code = EXIT_CONFIG


class RetryableError(PlatformError, TransientException):
    """Another attempt, later or on another pod, may succeed."""


class TerminalError(PlatformError, TerminalException):
    """No retry can fix this (a corrupt snapshot, a contract violation)."""


# Raised by a storage backend (flows/state/backends.py translates its client's errors into
# these) for a request that was understood and refused: retrying cannot help.
PERMANENT_IO_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    ValueError,
    TypeError,
)


def is_transient_io(exc: BaseException) -> bool:
    """For one storage call: True for network-level failures worth another try."""
    if isinstance(exc, PERMANENT_IO_ERRORS):
        return False
    return isinstance(exc, OSError | ConnectionError | TimeoutError)


def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: dlt's step and extraction errors hide the real cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, PipelineStepFailed) and current.exception is not None:
            current = current.exception
        else:
            current = current.__cause__ or getattr(current, "exception", None)


def root_cause(exc: BaseException) -> BaseException:
    return list(cause_chain(exc))[-1]


def first_platform_error(exc: BaseException) -> PlatformError | None:
    return next((e for e in cause_chain(exc) if isinstance(e, PlatformError)), None)


def is_terminal(exc: BaseException) -> bool:
    """True when no retry can help. The outermost error that belongs to a family decides
    (the platform wraps causes it has classified); an unknown error is retryable."""
    for error in cause_chain(exc):
        if isinstance(error, TransientException):
            return False
        if isinstance(error, TerminalException | DataValidationError | ImportError):
            return True
    return False


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code: the platform error's own, 2 for dlt's config errors."""
    ours = first_platform_error(exc)
    if ours is not None:
        return ours.exit_code
    from dlt.common.configuration.exceptions import ConfigurationException

    if any(isinstance(e, ConfigurationException | ImportError) for e in cause_chain(exc)):
        return EXIT_CONFIG
    return EXIT_FAILURE


def one_line(exc: BaseException) -> str:
    """`Type: first line` of the cause worth showing: our own error, else a dlt config error
    (naming the setting it came from), else the root cause."""
    from dlt.common.configuration.exceptions import (
        ConfigurationException,
        ConfigValueCannotBeCoercedException,
    )

    cause: BaseException | None = first_platform_error(exc)
    if cause is None:
        cause = next((e for e in cause_chain(exc) if isinstance(e, ConfigurationException)), None)
        if isinstance(cause, ConfigValueCannotBeCoercedException):
            return f"{type(cause).__name__}: {describe_bad_value(cause)}"
    cause = cause or root_cause(exc)
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


def describe_bad_value(err: Any) -> str:
    """A config value that did not parse, with the env var that held it when there is one
    (dlt's own message names only the field)."""
    field, value = str(err.field_name), err.field_value
    hint = getattr(err.hint, "__name__", str(err.hint))
    suffix = "__" + field.upper()
    origins = sorted(
        key
        for key, v in os.environ.items()
        if (key.endswith(suffix) or key == field.upper()) and v == str(value)
    )
    where = f"{', '.join(origins)}" if origins else f"`{field}` in .dlt/config.toml or secrets.toml"
    return f"{where} = {value!r} is not a valid {hint} (setting `{field}`)"
