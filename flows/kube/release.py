"""A release changes only what the release itself changes.

`prefect deploy` replaces a deployment's job variables, concurrency limit and pause with what
`prefect.yaml` says, and `flows setup` used to reset the pool's limits: every `helm upgrade`,
Argo CD sync or rollback undid what an operator had set since (`flows tune --apply`, the UI,
`prefect work-pool set-concurrency-limit`). So each release records, per object, a digest of
every setting it applied (a Prefect Variable named `flows-release-...`, tagged
`flows-release`); the next release merges three ways, setting by setting:

- the release changed it (its value differs from the one the previous release applied):
  the release's value wins, over any operator change;
- the release left it as it was: the live value stays, the operator's if they changed it
  (or removed it);
- no record yet (a new object, or a deployment made before this platform version): the
  release's value.

The record holds digests, not values: it stays small (a Prefect Variable takes 5,000
characters) and holds no secret.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RECORD_TAG = "flows-release"
ABSENT = object()  # a setting the object does not have


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def digests(settings: Mapping[str, Any]) -> dict[str, str]:
    return {key: digest(value) for key, value in settings.items()}


@dataclass
class Merge:
    """The outcome for one object: what to set, and what was kept or taken."""

    merged: dict[str, Any]
    kept: list[str] = field(default_factory=list)  # the operator's value stays
    taken: list[str] = field(default_factory=list)  # the release changed it: its value


def three_way(
    applied: Mapping[str, str] | None, release: Mapping[str, Any], live: Mapping[str, Any]
) -> Merge:
    """`applied`: digests of what the previous release set (None: no record); `release`:
    what this release sets; `live`: what the object holds now (an operator's edits)."""
    if applied is None:
        return Merge(dict(release), taken=sorted(release))
    merged: dict[str, Any] = {}
    outcome = Merge(merged)
    for key in sorted(set(release) | set(live)):
        ours = release.get(key, ABSENT)
        theirs = live.get(key, ABSENT)
        changed = (digest(ours) if ours is not ABSENT else None) != applied.get(key)
        if changed:
            if ours is not ABSENT:
                merged[key] = ours
            if ours != theirs:
                outcome.taken.append(key)
        else:
            if theirs is not ABSENT:
                merged[key] = theirs
            if ours != theirs:
                outcome.kept.append(key)
    return outcome


def record_name(kind: str, key: str) -> str:
    """A Prefect Variable name (letters, digits, dashes and underscores only)."""
    return re.sub(r"[^a-z0-9_-]", "-", f"flows-release-{kind}-{key}".lower())[:255]


def read_record(client: Any, name: str) -> dict[str, str] | None:
    variable = client.read_variable_by_name(name)
    if variable is None or not isinstance(variable.value, dict):
        return None
    return {str(k): str(v) for k, v in variable.value.items()}


def write_record(client: Any, name: str, settings: Mapping[str, Any]) -> None:
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    value = digests(settings)
    if client.read_variable_by_name(name) is None:
        client.create_variable(VariableCreate(name=name, value=value, tags=[RECORD_TAG]))
    else:
        client.update_variable(VariableUpdate(name=name, value=value, tags=[RECORD_TAG]))


def merge_object(
    client: Any, record: str, release: Mapping[str, Any], live: Mapping[str, Any] | None
) -> Merge:
    """Three-way merge of one object's settings against its record (an object that did not
    exist before takes the release's values), then records what this release applied."""
    applied = read_record(client, record) if live is not None else None
    merge = three_way(applied, release, live or {})
    write_record(client, record, release)
    return merge


def describe(name: str, merge: Merge, live: Mapping[str, Any]) -> str:
    """One line: what the release took and which operator values it kept."""
    parts = []
    if merge.kept:
        kept = ", ".join(f"{k}={json.dumps(live.get(k))}" for k in merge.kept)
        parts.append(f"kept the operator's {kept}")
    if merge.taken:
        parts.append(f"release changed {', '.join(merge.taken)}")
    return f"{name}: {'; '.join(parts) or 'as the release says'}"
