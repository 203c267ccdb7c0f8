"""cgroup limit parsing on both layouts (file trees as the kernel writes them), and psutil use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flows.system.resources import container_limits, effective_cpus


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


def test_cgroup_v2_limits_and_throttling(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "cgroup.controllers": "cpu memory",
            "memory.max": str(512 * 2**20),
            "cpu.max": "150000 100000",
            "cpu.stat": "usage_usec 100\nnr_throttled 7\nthrottled_usec 2500000",
        },
    )
    limits = container_limits(root)
    assert (limits.cgroup_version, limits.cpu_limit, limits.memory_limit) == (2, 1.5, 512 * 2**20)
    assert (limits.cpu_throttled_periods, limits.cpu_throttled_seconds) == (7, 2.5)
    assert effective_cpus(limits) <= 1.5


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    root = write(tmp_path, {"cgroup.controllers": "", "memory.max": "max", "cpu.max": "max 100000"})
    limits = container_limits(root)
    assert (limits.cpu_limit, limits.memory_limit) == (None, None)


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": str(2**30),
            "cpu/cpu.cfs_quota_us": "50000",
            "cpu/cpu.cfs_period_us": "100000",
            "cpu/cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 4000000000",
        },
    )
    limits = container_limits(root)
    assert (limits.cgroup_version, limits.cpu_limit, limits.memory_limit) == (1, 0.5, 2**30)
    assert (limits.cpu_throttled_periods, limits.cpu_throttled_seconds) == (3, 4.0)


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
        },
    )
    limits = container_limits(root)
    assert (limits.cpu_limit, limits.memory_limit) == (None, None)


def test_usage_grows_with_allocation() -> None:
    """In a fresh process: a long test session's peak (its children's too) hides growth."""
    code = (
        "from flows.system.resources import current_usage; before = current_usage(); "
        "block = bytearray(64 * 2**20); block[::4096] = b'x' * len(block[::4096]); "
        "after = current_usage(); "
        "print(after.rss_bytes - before.rss_bytes, "
        "after.peak_rss_bytes >= after.rss_bytes and after.cpu_seconds > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown, consistent = out.stdout.split()
    assert int(grown) >= 32 * 2**20 and consistent == "True"


def test_release_memory_returns_freed_arrow_buffers() -> None:
    """pyarrow's pool keeps freed buffers (as after dlt's normalize) until told to let go."""
    code = (
        "import pyarrow as pa, pyarrow.compute as pc, psutil; "
        "from flows.system.resources import release_memory; rss = psutil.Process().memory_info; "
        "base = pa.array(range(2_000_000), type=pa.int64()); "
        "sums = [pc.add(base, i) for i in range(16)]; del sums; kept = rss().rss; "
        "released = release_memory(collect_cycles=False); print(released, kept - rss().rss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    released, dropped = map(int, out.stdout.split())
    assert released >= 100 * 2**20 and abs(released - dropped) < 8 * 2**20


FREED_BLOCKS = """
import sys, psutil
from flows.system.resources import free_large_blocks_at_once
if sys.argv[1] == "fixed":
    free_large_blocks_at_once()
rss = psutil.Process().memory_info
first = bytearray(16 * 2**20); del first  # glibc's threshold now follows the largest free
blocks, pins = [], []
for _ in range(20):  # 80 MiB of upload-part-sized buffers, each pinned below by a small one
    blocks.append(bytearray(4 * 2**20)); pins.append(bytearray(200_000))
before = rss().rss
del blocks
print(before - rss().rss)
"""


def test_large_blocks_go_back_to_the_os_when_freed() -> None:
    """With glibc's default (dynamic) mmap threshold freed buffers stay in the heap; after
    free_large_blocks_at_once they leave the process as they are freed."""

    def returned(mode: str) -> int:
        cmd = [sys.executable, "-c", FREED_BLOCKS, mode]
        return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)

    assert returned("default") < 8 * 2**20  # the case the setting is for
    assert returned("fixed") >= 72 * 2**20
