"""Options more than one command group takes."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from flows.config.platform import FlowsConfiguration

POOL_HELP = f"default: FLOWS_WORK_POOL or {FlowsConfiguration.flows_work_pool}"
WAIT_HELP = f"seconds (default: WAIT_SECONDS or {FlowsConfiguration.wait_seconds:g})"


def add_state_url(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--state-url",
        required=required,
        help="state store, e.g. s3://bucket/prefix or file:///path (default: STATE__URL or "
        "$FLOWS_HOME/state)",
    )


def confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise ValueError(f"{question} needs confirmation: pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def flows_version() -> str:
    """The installed distribution's version (pyproject.toml spells it once)."""
    return version("flows")
