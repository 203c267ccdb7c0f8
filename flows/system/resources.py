"""What the process uses and what its container allows: psutil plus cgroup v1/v2 limits.

Summaries in the Prefect UI and the tuning commands read these; a Kubernetes pod's limits
are its cgroup's limits, so no Kubernetes API call is needed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2^63


@dataclass(frozen=True)
class ContainerLimits:
    """CPU cores and memory bytes the cgroup allows (None: unlimited), and throttling so far."""

    cgroup_version: int | None
    cpu_limit: float | None
    memory_limit: int | None
    cpu_throttled_periods: int
    cpu_throttled_seconds: float
    oom_kills: int = 0  # processes the kernel OOM-killed in this cgroup so far (v2 only)


@dataclass(frozen=True)
class Usage:
    """Resource use of this process (and its children) since it started."""

    cpu_seconds: float
    peak_rss_bytes: int
    rss_bytes: int
    wall_seconds: float


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _stat_file(path: Path) -> dict[str, int]:
    text = _read(path) or ""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def _own_dir(root: Path, controller: str | None) -> Path:
    """The process's own cgroup folder when mounted (a container sees its own at the root)."""
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        _id, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (
            controller and controller in controllers.split(",")
        ):
            base = root / controller if controller else root
            candidate = base / path.lstrip("/")
            return candidate if candidate.exists() else base
    return root / controller if controller else root


def container_limits(root: Path = CGROUP_ROOT) -> ContainerLimits:
    """Reads cgroup v2 (`memory.max`, `cpu.max`) or v1 (`memory.limit_in_bytes`, CFS quota)."""
    if (root / "cgroup.controllers").exists():  # unified hierarchy (v2)
        own = _own_dir(root, None)
        v2 = own if (own / "memory.max").exists() else root
        memory = _read(v2 / "memory.max")
        cpu = (_read(v2 / "cpu.max") or "max 100000").split()
        stat = _stat_file(v2 / "cpu.stat")
        return ContainerLimits(
            cgroup_version=2,
            cpu_limit=None if cpu[0] == "max" else int(cpu[0]) / int(cpu[1]),
            memory_limit=None if memory in (None, "max") else int(memory),
            cpu_throttled_periods=stat.get("nr_throttled", 0),
            cpu_throttled_seconds=stat.get("throttled_usec", 0) / 1e6,
            oom_kills=_stat_file(v2 / "memory.events").get("oom_kill", 0),
        )
    mem_dir, cpu_dir = _own_dir(root, "memory"), _own_dir(root, "cpu")
    if not mem_dir.exists() and not cpu_dir.exists():
        return ContainerLimits(None, None, None, 0, 0.0)
    mem_bytes = int(_read(mem_dir / "memory.limit_in_bytes") or UNLIMITED)
    quota = int(_read(cpu_dir / "cpu.cfs_quota_us") or -1)
    period = int(_read(cpu_dir / "cpu.cfs_period_us") or 100000)
    stat = _stat_file(cpu_dir / "cpu.stat")
    return ContainerLimits(
        cgroup_version=1,
        cpu_limit=quota / period if quota > 0 else None,
        memory_limit=mem_bytes if mem_bytes < UNLIMITED else None,
        cpu_throttled_periods=stat.get("nr_throttled", 0),
        cpu_throttled_seconds=stat.get("throttled_time", 0) / 1e9,
    )


def current_usage() -> Usage:
    """CPU time and peak RSS of this process and its waited-for children (worker processes)."""
    proc = psutil.Process()
    cpu = proc.cpu_times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss)
    rss = proc.memory_info().rss
    return Usage(
        cpu_seconds=cpu.user + cpu.system + children.ru_utime + children.ru_stime,
        # the kernel updates ru_maxrss lazily: a peak below the current RSS is stale
        peak_rss_bytes=max(peak_kb * 1024, rss),
        rss_bytes=rss,
        wall_seconds=time.time() - proc.create_time(),
    )


def effective_cpus(limits: ContainerLimits | None = None) -> float:
    limits = limits or container_limits()
    cores = float(len(os.sched_getaffinity(0)))
    return min(cores, limits.cpu_limit) if limits.cpu_limit else cores


def as_dict(limits: ContainerLimits, usage: Usage) -> dict[str, object]:
    return {**asdict(limits), **asdict(usage)}


def release_memory(collect_cycles: bool = True) -> int:
    """Gives memory freed by the step that just ended back to the OS; returns bytes released.

    Run at step boundaries: dlt's normalize leaves arrow buffers in pyarrow's pool and freed
    heap in glibc's arenas, which count against the pod's memory limit until the next step.
    `collect_cycles=False` skips the full `gc.collect()`: at dlt's step boundaries it freed
    nothing measurable (0.0 MiB, files and synthetic pipelines) and took about 50 ms, a
    traversal of every object the run's imports left (130,000).
    """
    before = psutil.Process().memory_info().rss
    if collect_cycles:
        gc.collect()
    if (pyarrow := sys.modules.get("pyarrow")) is not None:
        pyarrow.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    return max(0, before - psutil.Process().memory_info().rss)


# glibc serves a block of this size or more by mmap and unmaps it when it is freed.
LARGE_BLOCK_BYTES = 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def free_large_blocks_at_once() -> None:
    """Makes glibc give every block of LARGE_BLOCK_BYTES or more back to the OS when freed.

    By default glibc raises its mmap threshold to the largest block freed so far (up to
    32 MiB), so transient buffers (the state store's 8 MiB upload parts) are served from the
    heap afterwards and stay in the process until the next `release_memory`, counted
    against the pod's limit while DuckDB loads. Measured here,
    `flows run` of 1,000,000 synthetic rows with S3 snapshots: cgroup peak 496 and 509 MiB
    before, 464 and 470 MiB after. A fixed threshold also ends the dynamic one. Run once,
    early: forked children (the attempt, normalize workers) inherit it.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


def _glibc() -> ctypes.CDLL | None:
    """glibc, which has malloc_trim and mallopt; None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()
