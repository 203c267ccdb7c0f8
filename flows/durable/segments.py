"""Checkpointed extract: a long extract runs as bounded segments, each committed before the
next one starts.

Every segment is extracted for at most `checkpoint_every` seconds (dlt's
`resource.add_limit(max_time=...)` closes each resource's generator after the item that
crosses the bound), then normalized, loaded and snapshotted. The state in that snapshot holds
the incremental cursor that covers exactly what was loaded, so a rerun on a fresh pod starts
the next segment after it: at most one interval of the source is read again.

That is only true of a source that resumes from its cursor in the order it reads: every
resource it extracts (transformers follow their parent) has an incremental whose rows arrive
in the order the cursor advances (`row_order="asc"`, dlt's meaning: ascending as its
`last_value_func` orders them). A cut in the middle of any other source would move the cursor
past rows it never yielded. Such a source is refused when checkpoints were asked for
(`CheckpointRefusedError`, exit 2), and runs as one segment when they come from the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows import dlt_internals
from flows.errors import ConfigError

# seconds between checkpoints for a source that qualifies and has no setting of its own
DEFAULT_CHECKPOINT_EVERY = 300.0


class CheckpointRefusedError(ConfigError):
    """`checkpoint_every` was set for a source that cannot resume from its cursor."""


@dataclass(frozen=True)
class Segments:
    """How one run extracts: every `every` seconds a checkpoint, or one segment (`every`
    None) for `why`."""

    every: float | None
    why: str = ""


def unordered_resources(source: Any) -> list[str]:
    """The extracted resources that cannot resume from their cursor, each with the reason."""
    problems = []
    for name, resource in source.selected_resources.items():
        if resource.is_transformer:
            continue
        incremental = dlt_internals.declared_incremental(resource)
        if incremental is None:
            problems.append(f"resource {name!r} has no incremental cursor")
        elif incremental.row_order != "asc":
            problems.append(
                f"resource {name!r}'s cursor {incremental.cursor_path!r} has row_order "
                f"{incremental.row_order!r}, not 'asc'"
            )
    return problems


def plan_segments(source: Any, every: float | None, pipeline_name: str) -> Segments:
    """Segments for `source`. `every` is the setting (None: not set, then the default for a
    source that qualifies; 0: off). A source that cannot resume from its cursor is refused
    when `every` was set, and runs as one segment otherwise."""
    if every == 0:
        return Segments(None, "checkpoint_every is 0")
    problems = unordered_resources(source)
    if problems and every is not None:
        raise CheckpointRefusedError(
            f"pipeline {pipeline_name!r}: checkpoint_every needs a source that resumes from "
            f"its cursor, but {'; '.join(problems)}: declare an incremental with "
            "row_order='asc' on it, or unset PIPELINES__"
            f"{pipeline_name.upper()}__CHECKPOINT_EVERY / --checkpoint-every"
        )
    if problems:
        return Segments(None, "; ".join(problems))
    return Segments(every if every is not None else DEFAULT_CHECKPOINT_EVERY)


def bound(source: Any, seconds: float) -> Any:
    """Limits every extracted resource of `source` to `seconds` of extract (returned)."""
    for resource in source.selected_resources.values():
        if not resource.is_transformer:
            resource.add_limit(max_time=seconds)
    return source


def cut_short(source: Any) -> bool:
    """True when the bound stopped a resource of `source` in its last extract: it has more."""
    return any(dlt_internals.limit_reached(r) for r in source.selected_resources.values())


def cursors(state: Any, source: Any) -> dict[str, Any]:
    """The cursor each resource reached, from the pipeline's state (`resource: last value`)."""
    reached: dict[str, Any] = {}
    resources = state.get("sources", {}).get(source.name, {}).get("resources", {}) if state else {}
    for name in source.selected_resources:
        for column, value in (resources.get(name, {}).get("incremental") or {}).items():
            if isinstance(value, dict) and "last_value" in value:
                key = name if len(resources[name]["incremental"]) == 1 else f"{name}.{column}"
                reached[key] = value["last_value"]
    return reached
