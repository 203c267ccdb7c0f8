"""`flows state show|unlock|drop`: inspect and repair a pipeline's stored state."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flows.cli.options import add_state_url, confirm


def register(sub: Any) -> None:
    """Adds `state` and its subcommands."""
    state = sub.add_parser("state", help="inspect or repair a pipeline's stored state")
    state_sub = state.add_subparsers(dest="state_command", required=True)
    show = state_sub.add_parser("show", help="generation, files, pending packages, lease")
    show.add_argument("pipeline")
    add_state_url(show, required=False)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_state_show)
    for name, helptext, func in (
        ("unlock", "revoke the lease (a dead run's, or a corrupt one)", cmd_state_unlock),
        ("drop", "delete every snapshot and the lease of the pipeline", cmd_state_drop),
    ):
        cmd = state_sub.add_parser(name, help=helptext)
        cmd.add_argument("pipeline")
        add_state_url(cmd, required=False)
        cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        cmd.set_defaults(func=func)


def _state_layout(args: argparse.Namespace) -> Any:
    """The pipeline's layout in the store; its name is checked before the store is opened."""
    from flows.config.settings import open_configured_store
    from flows.state.names import validate_pipeline_name
    from flows.state.snapshot import PipelineLayout

    validate_pipeline_name(args.pipeline, f"flows state {args.state_command} PIPELINE")
    return PipelineLayout(open_configured_store(args.state_url), args.pipeline)


def cmd_state_show(args: argparse.Namespace) -> int:
    from flows.parts.state import describe_with_parts, format_with_parts

    info = describe_with_parts(_state_layout(args))
    if not info["generations"] and info["lease"] is None and not info["parts"]:
        _refuse_unknown(args.pipeline, info["url"])
    print(json.dumps(info, indent=1, default=str) if args.json else format_with_parts(info))
    return 0


def _refuse_unknown(pipeline: str, url: str) -> None:
    """Nothing stored for `pipeline`: fine for a declared pipeline that has not run yet, a
    typo (exit 2, naming the declared pipelines) for any other name."""
    from flows.errors import ConfigError
    from flows.pipelines import discover

    declared = sorted(discover().pipelines)
    if pipeline not in declared:
        raise ConfigError(
            f"pipeline {pipeline!r} is not declared and has no state at {url}; declared "
            f"pipelines: {', '.join(declared) or 'none'}"
        )


def cmd_state_unlock(args: argparse.Namespace) -> int:
    """Revokes the lease: a live holder stops at its next renewal, and the next run takes
    the lease once it has seen it unchanged for the holder's TTL (no clock is compared, so
    this works whatever the holder's clock says). A corrupt lease is replaced by a revoked
    one."""
    from flows.state.inspect import lease_status
    from flows.state.lease import revoke

    layout = _state_layout(args)
    status = lease_status(layout)
    if status is None:
        print(f"{args.pipeline}: no lease held")
        return 0
    if not confirm(f"revoke the lease of {args.pipeline} ({status})?", args.yes):
        print("aborted")
        return 1
    from flows.state.config import state_config

    ttl = state_config().lease_ttl
    revoked = revoke(layout.store, layout.lease_path, "flows state unlock", ttl)
    if revoked is None:
        print(f"{args.pipeline}: the lease was released meanwhile")
        return 0
    wait = revoked.ttl or ttl
    print(
        f"{args.pipeline}: lease revoked; a live holder stops at its next renewal, and the "
        f"next run takes over after watching it unchanged for {wait:g} s"
    )
    return 0


def cmd_state_drop(args: argparse.Namespace) -> int:
    """Deletes the pipeline's snapshots while holding its lease, so no run writes while they
    go: a live lease is refused (exit 3), a revoked one (`flows state unlock`) is waited out
    the way a run waits for it (unchanged for its TTL, whatever any clock says), a corrupt
    one is revoked first."""
    from flows.state.config import state_config
    from flows.state.errors import LeaseCorruptError
    from flows.state.lease import Lease, revoke

    layout = _state_layout(args)
    generations = layout.generations()
    question = (
        f"delete all {len(generations)} snapshots of {args.pipeline} at "
        f"{layout.store.url_of(args.pipeline)}? The next run starts from the destination's state"
    )
    if not confirm(question, args.yes):
        print("aborted")
        return 1
    ttl = state_config().lease_ttl
    lease = Lease(layout.store, layout.lease_path, ttl=ttl, say=print)
    try:
        lease.acquire()
    except LeaseCorruptError:
        revoke(layout.store, layout.lease_path, "flows state drop", ttl)
        lease.acquire()
    try:
        for name in layout.store.list_names(layout.path()):
            if layout.path(name) != layout.lease_path:
                layout.store.remove_tree(layout.path(name))
    finally:
        lease.release()  # removes the lease object: nothing of the pipeline is left
    print(f"{args.pipeline}: state dropped ({len(generations)} snapshots)")
    return 0
