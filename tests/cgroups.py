"""Run a command in a real memory cgroup (v1 or v2) of its own, as the kernel enforces for a
container with `--memory`. Needs root, like the rest of the test setup."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _make_group(limit_bytes: int) -> Path:
    name = f"flows-test-{uuid.uuid4().hex[:8]}"
    if (ROOT / "cgroup.controllers").exists():  # v2: the parent must delegate memory
        control = ROOT / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            control.write_text("+memory")
        group = ROOT / name
        group.mkdir()
        (group / "memory.max").write_text(str(limit_bytes))
        (group / "memory.swap.max").write_text("0")
    else:
        group = ROOT / "memory" / name
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    return group


def peak_bytes(group: Path) -> int:
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        if (group / name).exists():
            return int((group / name).read_text())
    return 0


def run_limited(
    cmd: Sequence[str], limit_bytes: int, env: dict[str, str], timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Runs `cmd` with its memory capped; an OOM kill shows as returncode -9.

    Returns the process and the cgroup's peak memory use in bytes.
    """
    group = _make_group(limit_bytes)
    procs = group / "cgroup.procs"
    try:
        proc = subprocess.run(
            list(cmd),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=lambda: procs.write_text(str(os.getpid())),
        )
        return proc, peak_bytes(group)
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:  # processes still exiting
                time.sleep(0.1)
