"""`flows stack env` with no stack running: it says so and creates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_stack_env_without_a_running_stack_says_so_and_creates_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k != "FLOWS_HOME"},
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "flows", "stack", "env"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no local stack is running" in result.stderr and "flows stack up" in result.stderr
    assert list(elsewhere.iterdir()) == []  # no new stack home, no new password
