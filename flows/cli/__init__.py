"""`flows` command line: one module per command group (run, init, deploy, doctor, demo,
state, chart, metrics), assembled in flows/cli/main.py.

Exit codes: 0 success, 1 failure, 2 bad input or config, 3 the lease is held or was lost,
4 corrupt or foreign snapshot, 5 state store unreachable, 6 local disk full (flows/errors.py).
"""

from flows.cli.main import COMMANDS_GROUP, build_parser, entry, main

__all__ = ["COMMANDS_GROUP", "build_parser", "entry", "main"]
