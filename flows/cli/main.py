"""The `flows` parser: each command group adds its own (flows/cli/<group>.py), installed
distributions add theirs through the `flows.commands` entry points."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import NoReturn

from flows.cli import chart, demo, deploy, doctor, init, metrics, run, state
from flows.cli.options import flows_version
from flows.errors import exit_code_for, one_line
from flows.system.exits import exit_now

# subcommands contributed by installed distributions (_add_installed_commands)
COMMANDS_GROUP = "flows.commands"
DESCRIPTION = "`flows` command line: run pipelines, inspect and repair their state, run the demo."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flows", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"flows {flows_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, init, deploy, doctor, demo, state, chart, metrics):
        group.register(sub)
    _add_installed_commands(sub)
    return parser


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
