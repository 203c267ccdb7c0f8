"""`flows run` and `flows pipelines`: run a pipeline durably, list the declared ones."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli.options import add_state_url
from flows.durable.segments import DEFAULT_CHECKPOINT_EVERY
from flows.errors import ConfigError

if TYPE_CHECKING:
    from flows.pipelines import PipelineSpec


def register(sub: Any) -> None:
    """Adds `run` and `pipelines`."""
    run = sub.add_parser("run", help="run a pipeline, resuming whatever a dead run left")
    run.add_argument(
        "pipeline", help="a declared pipeline, or module:function (a dlt source) to run ad hoc"
    )
    run.add_argument("--name", help="ad hoc: pipeline name (default: the function's name)")
    run.add_argument("--dataset", help="ad hoc: dataset name (default: the pipeline name)")
    run.add_argument("--destination", help="ad hoc: dlt destination (default: duckdb)")
    add_state_url(run, required=False)
    run.add_argument("--pipelines-dir", type=Path, help="local working dirs (default: temp-free)")
    run.add_argument(
        "--run-id",
        help="id shared by all attempts of one logical run: a new attempt revokes an earlier "
        "one's lease and takes over once it expired",
    )
    run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the lease")
    run.add_argument("--full-refresh", action="store_true", help="drop tables and cursors first")
    run.add_argument(
        "--checkpoint-every",
        type=float,
        metavar="SECONDS",
        help="commit the extract at least this often, in segments, so a rerun continues after "
        "the last one (a source with an incremental cursor and row_order='asc'; 0: off; "
        "default: PIPELINES__<NAME>__CHECKPOINT_EVERY, else "
        f"{DEFAULT_CHECKPOINT_EVERY:g} s for a source that qualifies)",
    )
    run.add_argument("--json", action="store_true", help="print the run report as JSON")
    run.set_defaults(func=cmd_run)

    sub.add_parser("pipelines", help="list the declared pipelines and where they are declared")
    sub.choices["pipelines"].set_defaults(func=cmd_pipelines)


def cmd_run(args: argparse.Namespace) -> int:
    from dlt.common.runtime.collector import LogCollector

    from flows.durable.report import print_report
    from flows.durable.run import run_pipeline

    report = run_pipeline(
        _pipeline_to_run(args),
        state_url=args.state_url,
        pipelines_dir=args.pipelines_dir,
        run_id=args.run_id,
        wait=args.wait,
        full_refresh=args.full_refresh,
        checkpoint_every=_checkpoint_every(args),
        progress=None if args.json else LogCollector(log_period=5, logger=sys.stderr),
    )
    if args.json:
        print(json.dumps(asdict(report), default=str, indent=1))
    else:
        print_report(report)
    return 0


def _checkpoint_every(args: argparse.Namespace) -> float | None:
    from flows.pipelines.spec import parse_seconds

    if args.checkpoint_every is None:
        return None
    return parse_seconds(args.checkpoint_every, "--checkpoint-every")


def _pipeline_to_run(args: argparse.Namespace) -> str | PipelineSpec:
    """A declared name (`run_pipeline` resolves it, once), or an ad hoc spec for
    `module:function`."""
    from flows.pipelines import PipelineSpec
    from flows.state.names import validate_pipeline_name

    if ":" not in args.pipeline:
        if args.name or args.dataset or args.destination:
            raise ConfigError(
                f"--name, --dataset and --destination are for module:function, not the "
                f"declared pipeline {args.pipeline!r} (set them in its declaration)"
            )
        return args.pipeline
    function = args.pipeline.partition(":")[2].split(".")[-1]
    if args.name is not None:
        validate_pipeline_name(args.name, "--name")
    return PipelineSpec(
        name=args.name or function,
        source=args.pipeline,
        dataset_name=args.dataset or "",
        destination=args.destination,
        declared_in="the command line",
    )


def cmd_pipelines(args: argparse.Namespace) -> int:
    from flows.pipelines import discover

    catalog = discover()
    if not catalog.pipelines:
        print(f"no pipelines declared (looked in {catalog.where()})")
    for spec in sorted(catalog.pipelines.values(), key=lambda s: s.name):
        print(
            f"{spec.name:16} dataset {spec.dataset:12} {spec.source_name}  "
            f"[{spec.declared_in}]{'  ' + spec.description if spec.description else ''}"
        )
    return 0
