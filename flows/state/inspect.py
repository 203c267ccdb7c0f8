"""What `flows state show` prints: generations, files, pending packages and the lease."""

from __future__ import annotations

import time
from typing import Any

from flows.state.errors import LeaseCorruptError
from flows.state.lease import read_lease
from flows.state.snapshot import PipelineLayout


def lease_status(layout: PipelineLayout) -> str | None:
    """None (free), "held by ...", "revoked ..." or "corrupt: ...".

    Whether a lease ran out is never told from here: `expires_at` is the holder's clock, and
    only a waiter that sees the lease unchanged for its TTL knows (state/lease.py). The time
    is shown as the holder's clock has it.
    """
    try:
        lease = read_lease(layout.store, layout.lease_path)
    except LeaseCorruptError as err:
        return f"corrupt: {err}"
    if lease is None:
        return None
    until = time.strftime("%H:%M:%S UTC", time.gmtime(lease.expires_at))
    when = f"epoch {lease.epoch}, renewed until {until} by the holder's clock"
    if lease.revoked_by:
        return f"revoked by {lease.revoked_by} (held by {lease.holder}, {when})"
    return f"held by {lease.holder} ({when})"


def describe_state(layout: PipelineLayout) -> dict[str, Any]:
    generations = layout.generations()
    info: dict[str, Any] = {
        "pipeline": layout.pipeline_name,
        "url": layout.store.url_of(layout.pipeline_name),
        "generations": generations,
        "generation": generations[-1] if generations else 0,
        "lease": lease_status(layout),
    }
    if generations:
        manifest = layout.read_manifest(generations[-1])
        info.update(
            step=manifest.step,
            created_at=manifest.created_at,
            owner=manifest.owner,
            files=len(manifest.files),
            bytes=manifest.total_bytes,
            pending_extracted=manifest.load_ids("normalize/extracted"),
            pending_normalized=manifest.load_ids("load/normalized"),
        )
    return info


def format_state(info: dict[str, Any]) -> str:
    lines = [f"{info['pipeline']} at {info['url']}"]
    if not info["generations"]:
        lines.append("  no snapshots")
    else:
        lines += [
            f"  generation {info['generation']} (kept: {info['generations']}) after "
            f"{info['step']} at {info['created_at']} by {info['owner']}",
            f"  {info['files']} files, {info['bytes']:,} bytes",
            f"  pending extracted packages: {info['pending_extracted'] or 'none'}",
            f"  pending normalized packages: {info['pending_normalized'] or 'none'}",
        ]
    lines.append(f"  lease: {info['lease'] or 'free'}")
    return "\n".join(lines)
