"""The settings a flow run's Prefect engine reads: from the environment only, without dlt.

The engine never imports dlt (flows/errors.py), so these cannot be resolved by dlt's
providers as the rest of the platform's settings are (flows/config/platform.py); the pod's
entrypoint (flows/prefect/pod.py) reads one before it has imported anything but the standard
library. Each is read when it is needed, so a bad value fails only what uses it, in one line
naming the variable (`ConfigError`, exit 2). Each name and default is spelled once, here;
the pod's requests and limits are named in flows/system/quantities.py (POD_RESOURCE_ENV),
which checks them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from flows.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class EnvSetting(Generic[T]):
    """One variable: its name, its value when unset, and how its text is read (the parser
    raises ConfigError naming the variable)."""

    name: str
    default: T
    parse: Callable[[str, str], T]

    def get(self) -> T:
        raw = os.environ.get(self.name)
        return self.default if raw is None else self.parse(self.name, raw)


def _text(name: str, raw: str) -> str | None:
    return raw or None


def _zero_or_one(name: str, raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ConfigError(f"{name} = {raw!r} is not 0 or 1")
    return raw == "1"


def _count(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} = {raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"{name} = {value} must be 0 or more")
    return value


# 1: the engine starts its first attempt's interpreter before it imports Prefect (pod.py)
PREWARM_ATTEMPT = EnvSetting("FLOWS_PREWARM_ATTEMPT", True, _zero_or_one)
# crashes of one flow run rerun before the next is refused (prefect/reruns.py)
CRASH_RERUNS = EnvSetting("FLOWS_CRASH_RERUNS", 3, _count)
# seconds before the first rerun after a crash, doubled per crash (prefect/reruns.py)
CRASH_RERUN_BACKOFF = EnvSetting("FLOWS_CRASH_RERUN_BACKOFF", 5, _count)
# the image the pod runs, for the run report (the pool's base job template sets it)
IMAGE: EnvSetting[str | None] = EnvSetting("FLOWS_IMAGE", None, _text)


@dataclass(frozen=True)
class RunBounds:
    """A flow run's time bounds, from its job variables (flows/kube/pool_template.py)."""

    start_timeout: int | None
    deadline: int | None


def _bounds(name: str, raw: str) -> RunBounds:
    start, sep, deadline = raw.partition("/")
    if not sep or not all(part.isdigit() or part == "" for part in (start, deadline)):
        raise ConfigError(f"{name} = {raw!r} is not <start timeout>/<run deadline> in seconds")
    return RunBounds(int(start) if start else None, int(deadline) if deadline else None)


# "<start_timeout_seconds>/<active_deadline_seconds>" of the flow run (pool template)
RUN_BOUNDS_ENV = "FLOWS_RUN_BOUNDS"
RUN_BOUNDS = EnvSetting(RUN_BOUNDS_ENV, RunBounds(None, None), _bounds)
