"""`flows state show PIPELINE` for a fanned-out pipeline: the pipeline and its parts together.

Each part (`PIPELINE--<part>`) is a pipeline of its own in the store; listing them next to the
whole pipeline shows at a glance which parts have state, which are pending and which hold a
lease.
"""

from __future__ import annotations

from typing import Any

from flows.parts.plan import parts_in_store
from flows.state.inspect import describe_state, format_state
from flows.state.snapshot import PipelineLayout


def describe_with_parts(layout: PipelineLayout) -> dict[str, Any]:
    info = describe_state(layout)
    info["parts"] = [
        describe_state(PipelineLayout(layout.store, name))
        for name in parts_in_store(layout.store, layout.pipeline_name)
    ]
    return info


def format_with_parts(info: dict[str, Any]) -> str:
    parts = info.get("parts") or []
    text = format_state(info)
    if not parts:
        return text
    lines = [text, f"parts ({len(parts)}):"]
    lines += ["\n".join("  " + line for line in format_state(p).splitlines()) for p in parts]
    return "\n".join(lines)
