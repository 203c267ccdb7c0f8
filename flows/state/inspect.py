"""What `flows state show` prints: generations, files, pending packages and the lease."""

from __future__ import annotations

import time
from typing import Any

from flows.state.lease import LeaseInfo
from flows.state.snapshot import PipelineLayout
from flows.state.store import open_store


def describe_state(state_url: str, pipeline_name: str) -> dict[str, Any]:
    layout = PipelineLayout(open_store(state_url), pipeline_name)
    generations = layout.generations()
    info: dict[str, Any] = {
        "pipeline": pipeline_name,
        "url": layout.store.url_of(pipeline_name),
        "generations": generations,
        "generation": generations[-1] if generations else 0,
        "lease": None,
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
    raw = layout.store.read_bytes(layout.lease_path)
    if raw is not None:
        lease = LeaseInfo.from_json(raw)
        info["lease"] = {
            "holder": lease.holder,
            "epoch": lease.epoch,
            "expires_in_s": round(lease.expires_at - time.time(), 1),
            "expired": lease.expired(),
        }
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
    lease = info["lease"]
    if lease is None:
        lines.append("  lease: free")
    else:
        state = "expired" if lease["expired"] else f"expires in {lease['expires_in_s']} s"
        lines.append(f"  lease: held by {lease['holder']} (epoch {lease['epoch']}, {state})")
    return "\n".join(lines)
