"""Bad pipeline declarations: refused before a lease is taken or a byte is written.

Each is a `ConfigError` (exit code 2, terminal: Prefect does not retry it) whose message is
one line naming the problem, where pipelines are declared and the known names."""

from __future__ import annotations

from collections.abc import Iterable

from flows.errors import ConfigError


class DeclarationError(ConfigError):
    """A pipeline declaration is missing, broken or ambiguous. `known` holds the declared
    pipeline names when the message gives them (None when it does not)."""

    def __init__(self, message: str, known: Iterable[str] | None = None) -> None:
        super().__init__(message)
        self.known = None if known is None else tuple(sorted(known))


class UnknownPipelineError(DeclarationError):
    pass


class DuplicatePipelineError(DeclarationError):
    pass


class SourceImportError(DeclarationError):
    """The declared `module:function` does not import."""


class NotASourceError(DeclarationError):
    """The declared function returned something that is neither a dlt source nor a resource."""
