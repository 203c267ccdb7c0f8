"""`flows stack up|down|env`: the local stack as a `flows` subcommand.

devstack/pyproject.toml registers `register` in the `flows.commands` entry-point group, so
the command exists wherever devstack is installed (scripts/bootstrap.sh) and the product CLI
never names it; the platform image does not install devstack, so it has no `flows stack`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `stack` to the `flows` subcommands (called by flows.cli.build_parser)."""
    stack = sub.add_parser("stack", help="the local stack: server, PostgreSQL, S3, worker")
    stack.add_argument("action", choices=["up", "down", "env"])
    stack.add_argument("--dir", type=Path, default=None, help="default: $FLOWS_HOME/stack")
    stack.add_argument("--port", type=int, default=4200, help="Prefect API and UI port")
    stack.set_defaults(func=cmd_stack)


def cmd_stack(args: argparse.Namespace) -> int:
    # imported here: `flows --help` loads this module and should not pay for the stack's
    from devstack.stack import LocalStack, find_running, remember
    from flows.config.settings import flows_home

    if args.action == "env":
        stack = find_running(args.dir, flows_home() / "stack")
        for key, value in stack.shell_env().items():
            print(f"export {key}={value!r}")
        return 0
    stack = LocalStack(args.dir or flows_home() / "stack", api_port=args.port)
    if args.action == "up":
        stack.up()
        remember(stack.root)
        print(f"Prefect UI: http://127.0.0.1:{stack.api_port}  (user:password {stack.auth_string})")
        print(f"state and data: {stack.root}; `flows stack env` prints client settings")
    else:
        stack.down()
        print(f"stopped; data kept in {stack.root}")
    return 0
