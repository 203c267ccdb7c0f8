"""`flows setup`, `flows deploy`, `flows tune`: the work pool, the deployments and their job
variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flows.cli.options import POOL_HELP, confirm, flows_version
from flows.errors import ConfigError
from flows.kube.setup import MIN_UNRESPONSIVE_AFTER_SECONDS, UNRESPONSIVE_AFTER_SECONDS


def register(sub: Any) -> None:
    """Adds `setup`, `deploy` and `tune`."""
    setup = sub.add_parser("setup", help="create or update the work pool, limits and alerts")
    setup.add_argument("--pool", help=POOL_HELP)
    setup.add_argument(
        "--type", dest="pool_type", default="kubernetes", choices=["kubernetes", "process"]
    )
    setup.add_argument("--base-job-template", type=Path, help="default: the packaged template")
    setup.add_argument(
        "--pool-concurrency",
        type=int,
        default=None,
        help="the pool's concurrency limit; unset leaves the pool's own (an operator's) limit",
    )
    setup.add_argument(
        "--tag-limit",
        action="append",
        default=[],
        metavar="TAG=N",
        help="task concurrency limit per tag (default dlt=8)",
    )
    setup.add_argument("--alert-webhook-url", help="default: FLOWS_ALERT_WEBHOOK_URL")
    setup.add_argument(
        "--alert-block", help="notification block as <block-type-slug>/<name> (FLOWS_ALERT_BLOCK)"
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
        help="where prefect.yaml is (default: the current directory; FLOWS_PROJECT_DIR is "
        "where the project lies when its runs start, default this folder)",
    )
    deploy.add_argument(
        "--release-job-variables",
        type=Path,
        metavar="FILE",
        help="job variables that are part of this release, per deployment "
        '(YAML or JSON: {"FLOW/DEPLOYMENT": {"memory_limit": "3Gi"}}); `flows tune '
        "--values` prints them",
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
    tune.add_argument(
        "--values",
        action="store_true",
        help="print the recommendation as Helm values (deployFlows.jobVariables) to commit, "
        "so that the release applies it (GitOps) instead of --apply",
    )
    tune.set_defaults(func=cmd_tune)


def cmd_setup(args: argparse.Namespace) -> int:
    from flows.config.platform import platform_config
    from flows.kube.setup import SetupOptions, run_setup

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
    config = platform_config()
    options = SetupOptions(
        pool=_given_or(args.pool, config.flows_work_pool),
        pool_type=args.pool_type,
        template_path=args.base_job_template,
        pool_concurrency=args.pool_concurrency,
        tag_limits=limits,
        alert_webhook_url=_given_or(args.alert_webhook_url, config.flows_alert_webhook_url),
        alert_block=_given_or(args.alert_block, config.flows_alert_block),
        unresponsive_after=after,
    )
    for line in run_setup(options):
        print(line)
    return 0


def _given_or(option: str | None, configured: str | None) -> Any:
    """The option when given (even empty), else the configured setting."""
    return configured if option is None else option


def cmd_deploy(args: argparse.Namespace) -> int:
    """`prefect --no-prompt deploy --all` with FLOWS_VERSION set (every deployment records
    the flows version it was made from; `flows doctor` compares it), then each deployment
    merged with what an operator changed since the last release (flows/kube/deployments.py)."""
    from flows.config.platform import platform_config
    from flows.kube.deploy_check import check_project
    from flows.kube.deployments import deploy, read_release_job_variables

    config = platform_config()
    # the folder deployed is the one named or the one you are in, never FLOWS_PROJECT_DIR:
    # a shell set up for another project (`flows stack env`) must not redeploy that one
    project = args.project_dir or Path.cwd()
    overrides = read_release_job_variables(args.release_job_variables)  # bad input first
    check_project(project)  # a request above its limit fails here, not at Job creation
    env = {
        **os.environ,
        "FLOWS_VERSION": flows_version(),
        "FLOWS_PROJECT_DIR": config.flows_project_dir or str(project.resolve()),
    }
    return deploy(project, env, overrides)


def cmd_tune(args: argparse.Namespace) -> int:
    from prefect.client.orchestration import get_client

    from flows.kube.tuning import (
        apply,
        deployment_name,
        format_recommendation,
        load,
        recommend,
        values_snippet,
    )

    if args.pipeline is not None:
        from flows.state.names import validate_pipeline_name

        validate_pipeline_name(args.pipeline, "--pipeline")
    with get_client(sync_client=True) as client:
        deployment, records = load(client, args.deployment, args.runs, args.pipeline)
        current = dict(deployment.job_variables or {}) if deployment else {}
        rec = recommend(args.deployment, records, current)
        if args.values:
            print(values_snippet(rec, deployment_name(client, deployment, args.deployment)))
            return 0
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
        if not confirm(f"update {deployment.name}'s job_variables?", args.yes):
            print("aborted")
            return 1
        apply(client, deployment, rec)
        print(f"{deployment.name}: job_variables updated")
    return 0
