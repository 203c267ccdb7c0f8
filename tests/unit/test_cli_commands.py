"""Subcommands of installed distributions (the `flows.commands` entry-point group): they join
the CLI, and a broken one is named on stderr and left out instead of breaking the CLI.

The distributions are real: a dist-info folder and a module on sys.path."""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from flows.cli import COMMANDS_GROUP, build_parser, main
from flows.cli.run import cmd_run


def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str]) -> str:
    """A distribution on sys.path whose module `<name>` defines `register` (adds `hello`,
    exit code 7) and `register_run` (takes the built-in name `run`); `entries` maps entry
    names to attributes of that module, or to a full `module:attr` to point elsewhere."""
    module = f"flows_test_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "def register(sub):\n"
        "    sub.add_parser('hello', help='says hello').set_defaults(func=lambda args: 7)\n"
        "\n"
        "def register_run(sub):\n"
        "    sub.add_parser('run')\n"
    )
    dist_info = tmp_path / f"{module}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = [
        f"{name} = {target if ':' in target else f'{module}:{target}'}"
        for name, target in entries.items()
    ]
    (dist_info / "entry_points.txt").write_text(f"[{COMMANDS_GROUP}]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_an_installed_command_joins_the_cli_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(tmp_path, monkeypatch, {"hello": "register"})
    assert "hello" in commands(build_parser())
    assert main(["hello"]) == 7
    assert capsys.readouterr().err == ""


def test_a_broken_entry_point_is_named_in_one_line_and_the_rest_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"no_such_module_{uuid.uuid4().hex[:8]}"
    install_plugin(
        tmp_path,
        monkeypatch,
        {"broken": f"{missing}:register", "run": "register_run", "hello": "register"},
    )
    found = commands(build_parser())
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    broken = next(line for line in err if f"broken = {missing}:register" in line)
    assert COMMANDS_GROUP in broken and "ModuleNotFoundError" in broken, broken
    taken = next(line for line in err if " run = " in line)
    assert "conflicting subparser" in taken, taken
    assert "hello" in found  # the good plugin still joined
    assert found["run"].get_default("func") is cmd_run  # a built-in is never replaced


def test_the_dev_stack_contributes_flows_stack() -> None:
    """scripts/bootstrap.sh installs devstack, whose pyproject registers `stack`."""
    from devstack.cli import cmd_stack

    assert commands(build_parser())["stack"].get_default("func") is cmd_stack


def test_exit_now_ends_as_an_exit_would_with_the_code_given() -> None:
    """Threading's exit hooks run, non-daemon threads finish, atexit handlers run, buffered
    output reaches the pipe: in the order of the interpreter's own exit."""
    code = (
        "import atexit, sys, threading, time\n"
        "from flows.system.exits import exit_now\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading._register_atexit(lambda: print('threading hook'))\n"  # Prefect's drains
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "sys.stdout.write('buffered '); sys.stderr.write('err')\n"
        "exit_now(4)\n"
        "print('never')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 4
    assert proc.stdout.split() == [
        *("buffered", "threading", "hook", "thread", "done", "atexit", "ran")
    ]
    assert proc.stderr == "err"
