"""The state store's settings, resolved by dlt's own config providers.

Every field is read from `STATE__<FIELD>` in the environment, `[state]` in
`.dlt/config.toml`, or `.dlt/secrets.toml`, in dlt's order; credentials live under
`[state.credentials]` (see store.py). A value that does not parse is refused naming the
setting it came from.
"""

from __future__ import annotations

import os
from typing import Any

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import ConfigValueCannotBeCoercedException
from dlt.common.configuration.specs import BaseConfiguration

from flows.state.errors import StateConfigError


@configspec
class StateStoreConfiguration(BaseConfiguration):
    url: str | None = None
    """`s3://bucket/prefix` or `file:///path`; default `file://$FLOWS_HOME/state`."""
    allow_ephemeral: bool = False
    """Accept `memory://` (nothing survives the process): for tests only."""
    retry_window: float = 60.0
    """Seconds a store call is retried before the store counts as unreachable (exit 5)."""
    retry_attempts: int | None = None
    """Upper bound on tries per call within the window (none by default; 0: none)."""
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 8.0
    lease_ttl: float = 120.0
    """Seconds a lease lives without renewal; the holder stops writing at 3/4 of it."""
    load_snapshot_interval: float = 10.0
    """Seconds between snapshots during a long load (0: after every job)."""
    keep_generations: int = 3
    """Snapshots kept after a good run."""


def setting_name(field: str) -> str:
    return f"STATE__{field.upper()} (or [state] {field} in .dlt/config.toml)"


def state_config(**explicit: Any) -> StateStoreConfiguration:
    """The resolved settings; `explicit` values (CLI options) win over every provider."""
    try:
        config = resolve_configuration(StateStoreConfiguration(), sections=("state",))
    except ConfigValueCannotBeCoercedException as err:
        raise StateConfigError(
            f"{setting_name(err.field_name)} = {err.field_value!r} is not a valid "
            f"{getattr(err.hint, '__name__', err.hint)}"
        ) from err
    for key, value in explicit.items():
        if value is not None:
            setattr(config, key, value)
    for field in ("retry_window", "lease_ttl"):
        if getattr(config, field) <= 0:
            raise StateConfigError(f"{setting_name(field)} must be positive")
    if config.load_snapshot_interval < 0:
        raise StateConfigError(f"{setting_name('load_snapshot_interval')} must be 0 or more")
    if config.keep_generations < 1:
        raise StateConfigError(f"{setting_name('keep_generations')} must be at least 1")
    return config


def url_origin(explicit: str | None) -> str:
    """Where the state URL came from, for error messages."""
    if explicit:
        return "--state-url"
    return "STATE__URL" if os.environ.get("STATE__URL") else "[state] url / STATE__URL"
