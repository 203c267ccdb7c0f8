"""What went wrong, and whether another attempt can fix it: one vocabulary for the platform.

dlt already splits its errors into `TerminalException` (bad config, bad credentials,
contract violations: no retry helps) and `TransientException` (network, a busy database).
The platform's own errors form the same two families (`TerminalError` and `ConfigError`,
`RetryableError`), and one question, `is_terminal`, answers for both: it serves the
runner's in-process retries, Prefect's retry condition, the crash rerun and the CLI's exit
codes. Besides the families, these are terminal, decided by type and never by message text,
wrapped or not (dlt wraps a step's error in PipelineStepFailed):

- a source's HTTP client error (requests' `HTTPError`, httpx's `HTTPStatusError`) whose
  response has a 4xx status other than 408, 425 and 429: a wrong token stays wrong;
- dlt's configuration errors and an unknown destination (exit code 2);
- a database's refused login: SQLSTATE class 28 (psycopg2's `pgcode`, psycopg's and
  asyncpg's `sqlstate`, through SQLAlchemy's `orig`), and `LoginRefused`, which the
  platform raises when a driver lost the SQLSTATE on the way (flows/dlt_internals.py);
- the user's own classes: subclasses of dlt's `TerminalException` or of `TerminalError`, or
  any class named (`module.Class`, comma-separated) in the env var `FLOWS_TERMINAL_ERRORS`.

Importing this module imports no dlt. The Prefect engine of a flow run imports it, and only
orchestrates: the pipeline runs in the attempt's process, and dlt (about 24 MB of the pod's
memory in every process that imports it) stays there. dlt's classes are looked up only in a
process that has imported dlt, the only kind of process where a dlt error can exist.

Exit codes (the `flows` CLI and a task attempt's child process):
  0 success   1 failure   2 bad input or config (terminal)   3 the lease is held or was lost
  4 corrupt or foreign snapshot (terminal)   5 state store unreachable (retryable)
  6 local disk full (terminal: the pod's disk is too small for the pipeline's state)
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from typing import Any

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_LEASE = 3
EXIT_CORRUPT = 4
EXIT_UNREACHABLE = 5
EXIT_DISK_FULL = 6


class PlatformError(Exception):
    """Base of the platform's own errors; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_FAILURE


class ConfigError(PlatformError):
    """Bad input: a setting, an argument or a declaration. The message names where it came
    from (the env var, the config file, the option) and what is accepted. Never retried."""

    exit_code = EXIT_CONFIG


class RetryableError(PlatformError):
    """Another attempt, later or on another pod, may succeed."""


class TerminalError(PlatformError):
    """No retry can fix this (a corrupt snapshot, a contract violation)."""


# What became of one task attempt (a run record's `outcome`, flows/progress/records.py).
COMPLETED = "completed"
FAILED = "failed"
KILLED = "killed"  # its process died by a signal (an OOM kill?) and could not report
CONFIG_ERROR = "config-error"  # bad input: the pipeline never ran


class PipelineAttemptError(RetryableError):
    """An attempt failed in a way another attempt may not (network, lost pod, lease held).
    `outcome` is KILLED when its process died by a signal, else FAILED."""

    def __init__(self, message: str, outcome: str = FAILED, cause: str = "") -> None:
        super().__init__(message)
        self.outcome = outcome
        self.cause = cause  # the class name of the child's error (run records count by it)


class TerminalPipelineError(TerminalError):
    """An attempt failed in a way no retry can fix (bad config or credentials, contract
    violation, corrupt snapshot): Prefect does not retry it. `exit_code` is the attempt's;
    `outcome` is CONFIG_ERROR for bad input (exit code 2), else FAILED."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE, cause: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.cause = cause  # the class name of the child's error (run records count by it)
        self.outcome = CONFIG_ERROR if exit_code == EXIT_CONFIG else FAILED


class LoginRefused(TerminalError):
    """A database refused the credentials (SQLSTATE class 28: a wrong password, an unknown
    user): no retry changes them. The message names the server, the user and what to set."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DiskFullError(TerminalError):
    """The local disk (the pipelines dir) has no room: not a store failure, and no retry on a
    pod of the same size frees space. The message names the folder and the bytes needed."""

    exit_code = EXIT_DISK_FULL


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


# A full local disk or an exhausted quota: no other try of the same write finds room.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True for a local write that found no room (ENOSPC, EDQUOT), decided by errno."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def is_transient_io(exc: BaseException) -> bool:
    """For one storage call: True for network-level failures worth another try (a full local
    disk is not one: the download that wrote to it is refused at once)."""
    if isinstance(exc, PERMANENT_IO_ERRORS) or is_disk_full(exc):
        return False
    return isinstance(exc, OSError | ConnectionError | TimeoutError)


def _dlt_classes(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` (dlt's, a driver's, an HTTP client's), if
    this process has imported it (no instance of them can exist otherwise); never imports
    the module."""
    loaded = sys.modules.get(module)
    found = (getattr(loaded, name, None) for name in names) if loaded is not None else ()
    return tuple(c for c in found if isinstance(c, type))


# Client errors a later try may not meet: Request Timeout, Too Early, Too Many Requests.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
# SQLSTATE class 28, "invalid authorization specification": a wrong password, an unknown user.
LOGIN_REFUSED_SQLSTATE_CLASS = "28"
# Comma-separated dotted names of the user's exception classes that no retry can fix.
TERMINAL_ERRORS_ENV = "FLOWS_TERMINAL_ERRORS"


def http_status(exc: BaseException) -> int | None:
    """The status of the response an HTTP client raised for (requests' `HTTPError`, httpx's
    `HTTPStatusError`); None for any other error or one without a response."""
    http_errors = (
        *_dlt_classes("requests.exceptions", "HTTPError"),
        *_dlt_classes("httpx", "HTTPStatusError"),
    )
    if not isinstance(exc, http_errors):
        return None
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_client_error(exc: BaseException) -> bool:
    """A 4xx answer that the same request gets again (not 408, 425, 429)."""
    status = http_status(exc)
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE a database driver's error carries: psycopg2's `pgcode`, psycopg's and
    asyncpg's `sqlstate`, through SQLAlchemy's `orig`; the platform's `LoginRefused`."""
    drivers: tuple[type[BaseException], ...] = (
        LoginRefused,
        *_dlt_classes("psycopg2", "Error"),
        *_dlt_classes("psycopg", "Error"),
        *_dlt_classes("asyncpg.exceptions", "PostgresError"),
    )
    wrapped = _dlt_classes("sqlalchemy.exc", "DBAPIError")
    for error in (exc, getattr(exc, "orig", None) if isinstance(exc, wrapped) else None):
        if isinstance(error, drivers):
            code = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
            if isinstance(code, str):
                return code
            return _psycopg2_class_codes().get(type(error))
    return None


def _psycopg2_class_codes() -> dict[type, str]:
    """psycopg2's error class of each SQLSTATE, inverted (`psycopg2.errors.InvalidPassword`
    is 28P01 even where no `pgcode` was set)."""
    loaded = sys.modules.get("psycopg2._psycopg")
    by_code = getattr(loaded, "sqlstate_errors", {}) if loaded is not None else {}
    return {cls: code for code, cls in by_code.items()}


def is_login_refused(exc: BaseException) -> bool:
    code = sqlstate(exc)
    return code is not None and code.startswith(LOGIN_REFUSED_SQLSTATE_CLASS)


def _named_terminal(exc: BaseException) -> bool:
    """True when the error's class or one of its bases is named in FLOWS_TERMINAL_ERRORS."""
    names = {n.strip() for n in os.environ.get(TERMINAL_ERRORS_ENV, "").split(",") if n.strip()}
    return bool(names) and any(
        f"{cls.__module__}.{cls.__qualname__}" in names for cls in type(exc).__mro__
    )


def _unknown_destination(exc: BaseException) -> bool:
    module = "dlt.common.destination.exceptions"
    unknown = _dlt_classes(module, "UnknownDestinationModule", "InvalidDestinationReference")
    return isinstance(exc, unknown)


def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: dlt's step and extraction errors hide the real cause
    (in `exception`, `__cause__`, or `__context__` when raised while handling it)."""
    step_failed = _dlt_classes("dlt.pipeline.exceptions", "PipelineStepFailed")
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "exception", None)
        if not isinstance(wrapped, BaseException):
            wrapped = None
        if step_failed and isinstance(current, step_failed) and wrapped is not None:
            current = wrapped
        else:
            context = None if current.__suppress_context__ else current.__context__
            current = current.__cause__ or wrapped or context


def root_cause(exc: BaseException) -> BaseException:
    return list(cause_chain(exc))[-1]


def first_platform_error(exc: BaseException) -> PlatformError | None:
    return next((e for e in cause_chain(exc) if isinstance(e, PlatformError)), None)


def _family(exc: BaseException) -> str | None:
    """The error's family, `transient` or `terminal`; None when no family claims it. The
    outermost error that belongs to a family decides (the platform wraps what it classified)."""
    transient: tuple[type[BaseException], ...] = (
        RetryableError,
        *_dlt_classes("dlt.common.exceptions", "TransientException"),
    )
    terminal: tuple[type[BaseException], ...] = (
        ConfigError,
        TerminalError,
        ImportError,
        *_dlt_classes("dlt.common.exceptions", "TerminalException"),
        *_dlt_classes("dlt.common.schema.exceptions", "DataValidationError"),
    )
    for error in cause_chain(exc):
        if isinstance(error, transient):
            return "transient"
        if (
            isinstance(error, terminal)
            or is_client_error(error)
            or is_login_refused(error)
            or _unknown_destination(error)
            or _named_terminal(error)
        ):
            return "terminal"
    if isinstance(root_cause(exc), ConnectionError | TimeoutError):
        return "transient"
    return None


def is_terminal(exc: BaseException) -> bool:
    """True when no retry can help; an unknown error is retryable."""
    return _family(exc) == "terminal"


def is_transient(exc: BaseException) -> bool:
    """True when the error is known to pass by itself (a connection lost, a busy database,
    an unreachable store): worth retrying for a while, not just a few times."""
    return _family(exc) == "transient"


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code: the platform error's own, 2 for dlt's config errors."""
    ours = first_platform_error(exc)
    if ours is not None:
        return ours.exit_code
    config: tuple[type[BaseException], ...] = (
        ImportError,
        *_dlt_classes("dlt.common.configuration.exceptions", "ConfigurationException"),
    )
    if any(isinstance(e, config) or _unknown_destination(e) for e in cause_chain(exc)):
        return EXIT_CONFIG
    return EXIT_FAILURE


def one_line(exc: BaseException) -> str:
    """`Type: first line` of the cause worth showing: our own error, else a dlt config error
    (naming the settings it came from), else an unknown destination (with the valid names),
    else the root cause."""
    module = "dlt.common.configuration.exceptions"
    cause: BaseException | None = first_platform_error(exc)
    if cause is None:
        config = _dlt_classes(module, "ConfigurationException")
        cause = next((e for e in cause_chain(exc) if isinstance(e, config)), None)
        if isinstance(cause, _dlt_classes(module, "ConfigValueCannotBeCoercedException")):
            return f"{type(cause).__name__}: {describe_bad_value(cause)}"
        if isinstance(cause, _dlt_classes(module, "ConfigFieldMissingException")):
            return f"{type(cause).__name__}: {describe_missing(cause)}"
    if cause is None:
        cause = next((e for e in cause_chain(exc) if _unknown_destination(e)), None)
        if cause is not None:
            return f"{type(cause).__name__}: {describe_unknown_destination(cause)}"
    cause = cause or root_cause(exc)
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


def describe_missing(err: Any) -> str:
    """dlt's missing fields with the env vars and TOML keys it tried for each (dlt's own first
    line names only the fields; the lookups follow on lines that one line drops)."""
    parts = []
    for field, traces in err.traces.items():
        env = [t.key for t in traces if t.provider == "Environment Variables"]
        toml = list(dict.fromkeys(".".join([*t.sections, field]) for t in traces))
        parts.append(
            f"`{field}`: set one of {', '.join(env) or 'no env var'} "
            f"or a key {' / '.join(toml)} in .dlt/secrets.toml or .dlt/config.toml"
        )
    return f"missing {'; '.join(parts)}"


GENERIC_DESTINATION_SETTING = (
    "the pipeline's `destination` (argument of dlt.pipeline, [pipelines.<name>] destination "
    "or PIPELINES__DESTINATION)"
)


def describe_unknown_destination(err: Any, where: str = GENERIC_DESTINATION_SETTING) -> str:
    """An unknown destination, the setting it came from and dlt's valid names (dlt's own
    message is a page long)."""
    ref = getattr(err, "ref", None) or getattr(err, "destination", None) or "?"
    destinations = sys.modules.get("dlt.destinations")
    names = sorted(n for n in getattr(destinations, "__all__", ()) if n != "destination")
    valid = f"; valid names: {', '.join(names)}" if names else ""
    return f"{where} = {ref!r} is not a dlt destination{valid}"


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


def cause_name(error: BaseException) -> str:
    """The class name of what an attempt failed on (a run record's `error`): the child's, as
    its attempt error carries it, else the first platform error's, else the root cause's."""
    if isinstance(error, PipelineAttemptError | TerminalPipelineError) and error.cause:
        return error.cause
    return type(first_platform_error(error) or root_cause(error)).__name__


def attempt_outcome(error: Exception) -> str:
    """What became of a task attempt that raised `error`: an attempt error's own outcome,
    else CONFIG_ERROR for bad input (exit code 2), else FAILED."""
    if isinstance(error, PipelineAttemptError | TerminalPipelineError):
        return error.outcome
    return CONFIG_ERROR if exit_code_for(error) == EXIT_CONFIG else FAILED
