"""Run a command in a real cgroup (v1 or v2) of its own, as the kernel enforces for a
container with `--memory` / `--cpus`. Needs root, like the rest of the test setup.

The group's peak memory (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`) covers every
process in it, page cache included: what a pod's memory limit and the OOM killer see.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Group:
    """The folders of one group: one on v2, one per controller on v1."""

    memory: Path
    cpu: Path | None

    @property
    def procs_files(self) -> list[Path]:
        dirs = {self.memory, *([self.cpu] if self.cpu else [])}
        return [d / "cgroup.procs" for d in dirs]

    def peak_bytes(self) -> int:
        return peak_bytes(self.memory)


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def _make_group(limit_bytes: int | None, cpus: float | None = None) -> Group:
    name = f"flows-test-{uuid.uuid4().hex[:8]}"
    quota = f"{int(cpus * CPU_PERIOD_US)}" if cpus else None
    if _v2():  # the parent must delegate the controllers
        control = ROOT / "cgroup.subtree_control"
        for controller in ("memory", "cpu"):
            if controller not in control.read_text().split():
                control.write_text(f"+{controller}")
        group = ROOT / name
        group.mkdir()
        if limit_bytes is not None:
            (group / "memory.max").write_text(str(limit_bytes))
            (group / "memory.swap.max").write_text("0")
        if quota:
            (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
        return Group(group, group)
    memory = ROOT / "memory" / name
    memory.mkdir()
    if limit_bytes is not None:
        (memory / "memory.limit_in_bytes").write_text(str(limit_bytes))
    cpu = None
    if quota:
        cpu = ROOT / "cpu" / name
        cpu.mkdir()
        (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(quota)
    return Group(memory, cpu)


def _remove(group: Group) -> None:
    for folder in {group.memory, *([group.cpu] if group.cpu else [])}:
        for _ in range(50):
            try:
                folder.rmdir()
                break
            except OSError:  # processes still exiting
                time.sleep(0.1)


def peak_bytes(group: Path) -> int:
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        if (group / name).exists():
            return int((group / name).read_text())
    return 0


@contextmanager
def cgroup(limit_bytes: int | None, cpus: float | None = None) -> Iterator[Group]:
    """A fresh group, removed afterwards; `limit_bytes`/`cpus` None: unlimited."""
    group = _make_group(limit_bytes, cpus)
    try:
        yield group
    finally:
        _remove(group)


def join(group: Group) -> None:
    """Moves the calling process into `group` (use as a child's preexec_fn)."""
    for procs in group.procs_files:
        procs.write_text(str(os.getpid()))


def run_limited(
    cmd: Sequence[str],
    limit_bytes: int | None,
    env: dict[str, str],
    timeout: float = 600,
    cpus: float | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Runs `cmd` with its memory (and CPU) capped; an OOM kill shows as returncode -9.

    Returns the process and the cgroup's peak memory use in bytes.
    """
    with cgroup(limit_bytes, cpus) as group:
        proc = subprocess.run(
            list(cmd),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            preexec_fn=lambda: join(group),
        )
        return proc, group.peak_bytes()
