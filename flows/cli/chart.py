"""What the Helm chart's pods run: the pool template, its sync, the server migration, the hooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flows.cli.options import POOL_HELP, WAIT_HELP
from flows.errors import ConfigError


def register(sub: Any) -> None:
    """Adds the chart's commands (flows/kube/hooks.py, flows/kube/pool_template.py)."""
    pool = sub.add_parser("work-pool", help="the Kubernetes pool's base job template")
    pool_sub = pool.add_subparsers(dest="pool_command", required=True)
    pool_sub.add_parser("template", help="print the template JSON").set_defaults(
        func=cmd_work_pool_template
    )
    sync = pool_sub.add_parser("sync", help="set the pool's template, nothing else")
    sync.add_argument("--pool", help=POOL_HELP)
    sync.add_argument("--base-job-template", type=Path, required=True)
    sync.set_defaults(func=cmd_work_pool_sync)
    wait = sub.add_parser("wait-for-server", help="wait until PREFECT_API_URL/ready answers")
    wait.add_argument("--timeout", type=float, help=WAIT_HELP)
    wait.set_defaults(func=cmd_hook)
    bucket = sub.add_parser("create-bucket", help="create the bucket at AWS_ENDPOINT_URL")
    bucket.add_argument("bucket")
    bucket.add_argument("--timeout", type=float, help=WAIT_HELP)
    bucket.set_defaults(func=cmd_hook)
    migrate = sub.add_parser("server-migrate", help="HA server: migrate the database once")
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only refuse a database migrated by a newer Prefect (the rollback hook)",
    )
    migrate.set_defaults(func=cmd_server_migrate)
    watchdog = sub.add_parser(
        "watchdog",
        help="end flow runs whose pod does not start in time; give back leaked slots",
    )
    watchdog.add_argument("--pool", help=POOL_HELP)
    watchdog.add_argument(
        "--namespace",
        help="the flow runs' Kubernetes namespace, to read why a pod did not start and delete "
        "its Job (unset: Prefect only, e.g. the local stack)",
    )
    watchdog.add_argument("--interval", type=float, default=15.0, help="seconds between passes")
    watchdog.add_argument("--once", action="store_true", help="one pass, then exit")
    watchdog.add_argument(
        "--alive-file", type=Path, help="touched after every pass (the container's probes)"
    )
    watchdog.set_defaults(func=cmd_watchdog)
    check = sub.add_parser("check-release", help="helm test: server ready, auth, work pool")
    check.add_argument("--pool", help=POOL_HELP)
    check.set_defaults(func=cmd_hook)


def _pool(args: argparse.Namespace) -> str:
    from flows.config.platform import platform_config

    return platform_config().flows_work_pool if args.pool is None else str(args.pool)


def _timeout(args: argparse.Namespace) -> float:
    from flows.config.platform import platform_config

    return platform_config().wait_seconds if args.timeout is None else float(args.timeout)


def cmd_work_pool_template(args: argparse.Namespace) -> int:
    from flows.kube.pool_template import template_json

    sys.stdout.write(template_json())
    return 0


def cmd_work_pool_sync(args: argparse.Namespace) -> int:
    from flows.kube.hooks import sync_work_pool

    print(sync_work_pool(_pool(args), args.base_job_template))
    return 0


def cmd_server_migrate(args: argparse.Namespace) -> int:
    from flows.kube.server_migrate import check, migrate

    for line in check() if args.check else migrate():
        print(line)
    return 0


def cmd_watchdog(args: argparse.Namespace) -> int:
    from flows.kube.watchdog import watch

    if args.interval <= 0:
        raise ConfigError(f"--interval takes a number of seconds above 0, got {args.interval:g}")
    for line in watch(_pool(args), args.namespace, args.interval, args.once, args.alive_file):
        print(line, flush=True)
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from flows.kube import hooks

    lines = {
        "wait-for-server": lambda: hooks.wait_for_server(_timeout(args)),
        "create-bucket": lambda: hooks.create_bucket(args.bucket, _timeout(args)),
        "check-release": lambda: hooks.check_release(_pool(args)),
    }[args.command]()
    for line in lines:
        print(line, flush=True)
    return 0
