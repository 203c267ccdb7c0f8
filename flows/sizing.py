"""dlt settings that fit the container: buffers, file rotation and worker counts from the
cgroup's memory and CPU limits.

Measured here (tests/benchmarks/bench_memory.py): 50,000 synthetic rows into DuckDB with
dlt's defaults (one file per table, 20 load workers) are OOM-killed under 512 MiB; with
files rotated at a few thousand rows and DuckDB's one load worker (settings.py) the same load
peaks near 246 MiB.
Explicit dlt config always wins (see settings.apply_platform_defaults).
"""

from __future__ import annotations

from flows.resources import ContainerLimits

MiB = 2**20
# Budget per row of one load job, generous enough for the worst loader format measured
# (insert_values into DuckDB: about 40 KB per row while a statement executes).
BYTES_PER_JOB_ROW = 32 * 1024
JOB_MEMORY = 256 * MiB  # what one concurrent load job may take


def adaptive_settings(limits: ContainerLimits, cpus: float) -> dict[str, str]:
    """dlt config keys sized for the limits; empty when memory is unlimited."""
    if limits.memory_limit is None:
        return {}
    memory = limits.memory_limit
    load_workers = max(1, min(20, memory // JOB_MEMORY, max(2, int(cpus * 4))))
    # rows per file: a quarter of the memory shared by the concurrent load jobs
    file_rows = int(memory // 4 // load_workers // BYTES_PER_JOB_ROW)
    file_rows = max(1_000, min(100_000, file_rows // 1000 * 1000))
    normalize_workers = max(1, min(int(cpus), memory // (2048 * MiB)))
    return {
        "data_writer.file_max_items": str(file_rows),
        "data_writer.buffer_max_items": str(min(5_000, file_rows)),
        "load.workers": str(load_workers),
        "normalize.workers": str(normalize_workers),
    }
