"""`flows` command line: run pipelines, inspect and repair their state, run the demo.

Exit codes: 0 success, 1 failure, 2 bad input or config, 3 the lease is held or was lost,
4 corrupt or foreign snapshot, 5 state store unreachable, 6 local disk full (flows/errors.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

from flows import __version__
from flows.errors import ConfigError, exit_code_for, one_line
from flows.exits import exit_now
from flows.prefect.setup import MIN_UNRESPONSIVE_AFTER_SECONDS, UNRESPONSIVE_AFTER_SECONDS

# subcommands contributed by installed distributions (_add_installed_commands)
COMMANDS_GROUP = "flows.commands"


def _add_state_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--state-url",
        required=required,
        help="state store, e.g. s3://bucket/prefix or file:///path (default: STATE__URL or "
        "$FLOWS_HOME/state)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flows", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"flows {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline, resuming whatever a dead run left")
    run.add_argument(
        "pipeline", help="a declared pipeline, or module:function (a dlt source) to run ad hoc"
    )
    run.add_argument("--name", help="ad hoc: pipeline name (default: the function's name)")
    run.add_argument("--dataset", help="ad hoc: dataset name (default: the pipeline name)")
    run.add_argument("--destination", help="ad hoc: dlt destination (default: duckdb)")
    _add_state_args(run, required=False)
    run.add_argument("--pipelines-dir", type=Path, help="local working dirs (default: temp-free)")
    run.add_argument(
        "--run-id",
        help="id shared by all attempts of one logical run: a new attempt revokes an earlier "
        "one's lease and takes over once it expired",
    )
    run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the lease")
    run.add_argument("--full-refresh", action="store_true", help="drop tables and cursors first")
    run.add_argument("--json", action="store_true", help="print the run report as JSON")
    run.set_defaults(func=cmd_run)

    sub.add_parser("pipelines", help="list the declared pipelines and where they are declared")
    sub.choices["pipelines"].set_defaults(func=cmd_pipelines)

    init = sub.add_parser("init", help="write a new dlt project for the platform into DIR")
    init.add_argument("dir", type=Path)
    init.add_argument("--name", help="package and pipeline name (default: from DIR)")
    init.set_defaults(func=cmd_init)

    setup = sub.add_parser("setup", help="create or update the work pool, limits and alerts")
    setup.add_argument("--pool", default=os.environ.get("FLOWS_WORK_POOL", "dlt-k8s"))
    setup.add_argument(
        "--type", dest="pool_type", default="kubernetes", choices=["kubernetes", "process"]
    )
    setup.add_argument("--base-job-template", type=Path, help="default: the packaged template")
    setup.add_argument("--pool-concurrency", type=int, default=4)
    setup.add_argument(
        "--tag-limit",
        action="append",
        default=[],
        metavar="TAG=N",
        help="task concurrency limit per tag (default dlt=8)",
    )
    setup.add_argument("--alert-webhook-url", default=os.environ.get("FLOWS_ALERT_WEBHOOK_URL"))
    setup.add_argument(
        "--alert-block",
        default=os.environ.get("FLOWS_ALERT_BLOCK"),
        help="notification block as <block-type-slug>/<name>",
    )
    setup.add_argument(
        "--unresponsive-after",
        type=int,
        default=UNRESPONSIVE_AFTER_SECONDS,
        metavar="SECONDS",
        help="mark a running flow run Crashed after this long without a heartbeat "
        f"(default {UNRESPONSIVE_AFTER_SECONDS}, at least {MIN_UNRESPONSIVE_AFTER_SECONDS}; "
        "0: never)",
    )
    setup.set_defaults(func=cmd_setup)

    deploy = sub.add_parser("deploy", help="prefect deploy --all, stamped with this version")
    deploy.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="where prefect.yaml is (default: FLOWS_PROJECT_DIR or .)",
    )
    deploy.set_defaults(func=cmd_deploy)

    tune = sub.add_parser("tune", help="recommend cpu/memory job_variables from run records")
    tune.add_argument(
        "deployment",
        help="FLOW/DEPLOYMENT, a deployment name, or a flow name on the embedded default",
    )
    tune.add_argument("--runs", type=int, default=20, help="newest run records to use")
    tune.add_argument("--pipeline", help="only records of this pipeline and its fan-out parts")
    tune.add_argument("--apply", action="store_true", help="update the deployment's job_variables")
    tune.add_argument("--yes", action="store_true", help="apply without asking")
    tune.set_defaults(func=cmd_tune)

    doctor = sub.add_parser("doctor", help="check API, pool, worker, deployments, storage")
    doctor.add_argument("--pool", help="default: FLOWS_WORK_POOL or dlt-k8s")
    doctor.add_argument("--state-url", help="default: STATE__URL")
    doctor.add_argument("--api-url", help="default: PREFECT_API_URL")
    doctor.add_argument(
        "--prefect-yaml", type=Path, help="default: $FLOWS_PROJECT_DIR/prefect.yaml"
    )
    doctor.set_defaults(func=cmd_doctor)

    demo = sub.add_parser("demo", help="run the demo pipelines on the embedded default")
    demo.add_argument("--rows", type=int, default=None, help="synthetic rows (default 100000)")
    demo.set_defaults(func=cmd_demo)

    state = sub.add_parser("state", help="inspect or repair a pipeline's stored state")
    state_sub = state.add_subparsers(dest="state_command", required=True)
    show = state_sub.add_parser("show", help="generation, files, pending packages, lease")
    show.add_argument("pipeline")
    _add_state_args(show, required=False)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_state_show)
    for name, helptext, func in (
        ("unlock", "revoke the lease (a dead run's, or a corrupt one)", cmd_state_unlock),
        ("drop", "delete every snapshot and the lease of the pipeline", cmd_state_drop),
    ):
        cmd = state_sub.add_parser(name, help=helptext)
        cmd.add_argument("pipeline")
        _add_state_args(cmd, required=False)
        cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        cmd.set_defaults(func=func)
    _add_chart_commands(sub)
    _add_installed_commands(sub)
    return parser


def _add_chart_commands(sub: Any) -> None:
    """What the Helm chart's pods run (flows/hooks.py, flows/work_pool)."""
    pool = sub.add_parser("work-pool", help="the Kubernetes pool's base job template")
    pool_sub = pool.add_subparsers(dest="pool_command", required=True)
    pool_sub.add_parser("template", help="print the template JSON").set_defaults(
        func=cmd_work_pool_template
    )
    sync = pool_sub.add_parser("sync", help="set the pool's template, nothing else")
    sync.add_argument("--pool", default=os.environ.get("FLOWS_WORK_POOL", "dlt-k8s"))
    sync.add_argument("--base-job-template", type=Path, required=True)
    sync.set_defaults(func=cmd_work_pool_sync)
    wait = sub.add_parser("wait-for-server", help="wait until PREFECT_API_URL/ready answers")
    wait.add_argument("--timeout", type=float, default=float(os.environ.get("WAIT_SECONDS", 120)))
    wait.set_defaults(func=cmd_hook)
    bucket = sub.add_parser("create-bucket", help="create the bucket at AWS_ENDPOINT_URL")
    bucket.add_argument("bucket")
    bucket.add_argument("--timeout", type=float, default=float(os.environ.get("WAIT_SECONDS", 120)))
    bucket.set_defaults(func=cmd_hook)
    migrate = sub.add_parser("server-migrate", help="HA server: migrate the database once")
    migrate.set_defaults(func=cmd_server_migrate)
    check = sub.add_parser("check-release", help="helm test: server ready, auth, work pool")
    check.add_argument("--pool", default=os.environ.get("FLOWS_WORK_POOL", "dlt-k8s"))
    check.set_defaults(func=cmd_hook)


def _add_installed_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands other installed distributions contribute, so this CLI names none of them
    (the dev stack's `flows stack` is one: devstack/pyproject.toml).

    Each entry point of the `flows.commands` group is a callable given `sub`: it adds its
    parser and sets `func` (a callable taking the parsed args, returning the exit code), as
    the commands above do. One that fails to load or register, or takes a name already
    taken, is reported in one line on stderr and left out; the other commands still work.
    """
    for entry in entry_points(group=COMMANDS_GROUP):
        try:
            entry.load()(sub)
        except Exception as err:
            detail = next(iter(str(err).splitlines()), "")
            print(
                f"warning: {COMMANDS_GROUP} entry point {entry.name} = {entry.value} failed, "
                f"command left out: {type(err).__name__}: {detail}",
                file=sys.stderr,
            )


def entry() -> NoReturn:
    """The `flows` console script and `python -m flows`: `main`, then `exit_now`."""
    exit_now(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        if args.verbose:
            logging.exception("details")
        return exit_code_for(err)


# commands -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from dlt.common.runtime.collector import LogCollector

    from flows.report import print_report
    from flows.run import run_pipeline

    report = run_pipeline(
        _pipeline_to_run(args),
        state_url=args.state_url,
        pipelines_dir=args.pipelines_dir,
        run_id=args.run_id,
        wait=args.wait,
        full_refresh=args.full_refresh,
        progress=None if args.json else LogCollector(log_period=5, logger=sys.stderr),
    )
    if args.json:
        print(json.dumps(asdict(report), default=str, indent=1))
    else:
        print_report(report)
    return 0


def _pipeline_to_run(args: argparse.Namespace) -> Any:
    """A declared name, or an ad hoc spec for `module:function`."""
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


def cmd_init(args: argparse.Namespace) -> int:
    from flows.init import init_project, package_name

    written = init_project(args.dir, args.name)
    for path in written:
        print(f"  {path}")
    name = package_name(args.dir, args.name)
    print(f"wrote {len(written)} files to {args.dir}; next: cd {args.dir} && flows run {name}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from flows.prefect.setup import SetupOptions, run_setup

    limits = {"dlt": 8}
    for item in args.tag_limit:
        tag, _, value = item.partition("=")
        if not tag or not value.isdigit():
            raise ConfigError(f"--tag-limit takes TAG=N, got {item!r}")
        limits[tag] = int(value)
    after = args.unresponsive_after
    if after != 0 and after < MIN_UNRESPONSIVE_AFTER_SECONDS:
        raise ConfigError(
            f"--unresponsive-after takes 0 or at least {MIN_UNRESPONSIVE_AFTER_SECONDS} s "
            f"(flow runs send a heartbeat every 30 s at the most), got {after}"
        )
    options = SetupOptions(
        pool=args.pool,
        pool_type=args.pool_type,
        template_path=args.base_job_template,
        pool_concurrency=args.pool_concurrency,
        tag_limits=limits,
        alert_webhook_url=args.alert_webhook_url,
        alert_block=args.alert_block,
        unresponsive_after=after,
    )
    for line in run_setup(options):
        print(line)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Runs `prefect --no-prompt deploy --all` with FLOWS_VERSION set, so every deployment
    records the flows version it was made from (`flows doctor` compares it)."""
    import subprocess

    from flows.deploy_check import check_project

    project = args.project_dir or Path(os.environ.get("FLOWS_PROJECT_DIR", "."))
    check_project(project)  # a request above its limit fails here, not at Job creation
    env = {
        **os.environ,
        "FLOWS_VERSION": __version__,
        "FLOWS_PROJECT_DIR": os.environ.get("FLOWS_PROJECT_DIR") or str(project.resolve()),
    }
    return subprocess.call(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=project, env=env
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from prefect.client.orchestration import get_client

    from flows.tune import apply, format_recommendation, load, recommend

    if args.pipeline is not None:
        from flows.state.names import validate_pipeline_name

        validate_pipeline_name(args.pipeline, "--pipeline")
    with get_client(sync_client=True) as client:
        deployment, records = load(client, args.deployment, args.runs, args.pipeline)
        current = dict(deployment.job_variables or {}) if deployment else {}
        rec = recommend(args.deployment, records, current)
        print(format_recommendation(rec))
        if not args.apply:
            return 0
        if deployment is None:
            raise ValueError(f"{args.deployment!r} is not a deployment: nothing to apply to")
        changes = rec.changes()
        if not changes:
            print("nothing to change")
            return 0
        print("diff:")
        for key, value in changes.items():
            print(f"  {key}: {current.get(key) or '-'} -> {value}")
        if not _confirm(f"update {deployment.name}'s job_variables?", args.yes):
            print("aborted")
            return 1
        apply(client, deployment, rec)
        print(f"{deployment.name}: job_variables updated")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from flows.doctor import default_options, run_doctor

    options = default_options()
    options.pool = args.pool or options.pool
    options.state_url = args.state_url or options.state_url
    options.api_url = (args.api_url or options.api_url).rstrip("/")
    options.prefect_yaml = args.prefect_yaml or options.prefect_yaml
    checks = run_doctor(options)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(rows=args.rows)


def _state_layout(args: argparse.Namespace) -> Any:
    """The pipeline's layout in the store; its name is checked before the store is opened."""
    from flows.settings import open_configured_store
    from flows.state.names import validate_pipeline_name
    from flows.state.snapshot import PipelineLayout

    validate_pipeline_name(args.pipeline, f"flows state {args.state_command} PIPELINE")
    return PipelineLayout(open_configured_store(args.state_url), args.pipeline)


def cmd_work_pool_template(args: argparse.Namespace) -> int:
    from flows.work_pool import template_json

    sys.stdout.write(template_json())
    return 0


def cmd_work_pool_sync(args: argparse.Namespace) -> int:
    from flows.hooks import sync_work_pool

    print(sync_work_pool(args.pool, args.base_job_template))
    return 0


def cmd_server_migrate(args: argparse.Namespace) -> int:
    from flows.server_migrate import migrate

    for line in migrate():
        print(line)
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from flows import hooks

    lines = {
        "wait-for-server": lambda: hooks.wait_for_server(args.timeout),
        "create-bucket": lambda: hooks.create_bucket(args.bucket, args.timeout),
        "check-release": lambda: hooks.check_release(args.pool),
    }[args.command]()
    for line in lines:
        print(line, flush=True)
    return 0


def cmd_state_show(args: argparse.Namespace) -> int:
    from flows.parts_state import describe_with_parts, format_with_parts

    info = describe_with_parts(_state_layout(args))
    print(json.dumps(info, indent=1, default=str) if args.json else format_with_parts(info))
    return 0


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise ValueError(f"{question} needs confirmation: pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


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
    if not _confirm(f"revoke the lease of {args.pipeline} ({status})?", args.yes):
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
    if not _confirm(question, args.yes):
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
