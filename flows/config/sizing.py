"""dlt settings that fit the container: buffers, file rotation and worker counts from the
cgroup's memory and CPU limits.

Measured here (tests/benchmarks/bench_memory.py): 50,000 synthetic rows into DuckDB with
dlt's defaults (one file per table, 20 load workers) are OOM-killed under 512 MiB; with
files rotated at a few thousand rows and DuckDB's one load worker (settings.py) the same load
peaks near 246 MiB.
Explicit dlt config always wins (see settings.apply_platform_defaults).
"""

from __future__ import annotations

from flows.system.resources import ContainerLimits

MiB = 2**20
# Budget per row of one load job. insert_values builds each statement in memory (into
# DuckDB about 40 KB per row while it executes); the other formats are files the destination
# streams: 200,000 rows into DuckDB peaked at 284 MB (parquet) and 312 MB (jsonl) for the
# whole process, against 7.9 GB with insert_values. Unknown format: the worst case.
BYTES_PER_JOB_ROW = 32 * 1024
STREAMED_BYTES_PER_JOB_ROW = 1024
STREAMED_FORMATS = frozenset({"parquet", "jsonl", "csv"})
JOB_MEMORY = 256 * MiB  # what one concurrent load job may take
MAX_JOB_ROWS = 1_000_000  # rows in one load file at most
# Rows in one extracted file at most. dlt gives each normalize worker a run of whole files
# (sorted by name: the pipeline-state file joins the first run), so a worker's share is off by
# up to a file: 1,000,000 rows in 10 files went 4 and 6 to 2 workers (9.8 s and 15.3 s, the
# step 15.4 s); in 40 files, 19 and 21 (13.5 s and 14.7 s). More files cost nothing
# measurable here (1 CPU: 24.9 to 27.2 s against 26.2 to 31.6 s for 10 files).
EXTRACT_FILE_ROWS = 25_000
# One normalize worker holds one package's files open with the writer buffers sized below:
# budget per worker, so that a 1 GiB pod with 2 CPUs still gets 2 workers.
NORMALIZE_WORKER_MEMORY = 512 * MiB
# Below this many bytes of extracted row-item files (compressed typed-jsonl), normalize runs
# in the run's own process: dlt polls its pool every 0.3 s (`Normalize.map_parallel`), so a
# pool costs at least that, and an arrow file is only moved or rewritten at disk speed.
# Measured here: the `files` pipeline (2,000,000 arrow rows from Parquet and CSV, 2 CPUs)
# normalized in 0.16 s in one process against 0.48 s on 2 workers, whose own work took 20-35
# ms; 50,000 synthetic rows (0.8 MB of rows) take 3.1 s in one process, so two workers pay
# for their 0.3 s from about 150 KB on.
POOL_MIN_ROW_BYTES = 128 * 1024
# Workers are forked: they share the parent's imported modules (copy on write), so the pool
# adds little to the pod's memory and starts in milliseconds; a spawned worker would import
# dlt again (about 1 s and 100 MB each). dlt itself switches to spawn off the main thread.
NORMALIZE_START_METHOD = "fork"
# DuckDB runs a thread per CPU and detects the cgroup's memory limit (80% of it for its buffer
# manager), but each thread of a load job keeps its own buffers. Under a memory limit it gets
# one thread per this much of the limit, at most one per CPU (DuckDB's own guides advise a few
# GB per thread, and fewer threads first when memory is short). Measured here, 2 CPUs and 4
# GiB, one thread against two (tests/benchmarks, 3 rounds): the cgroup peak of `products`
# (1,000,000 PostgreSQL rows, connectorx) 551 MiB against 650 and its wall 5.0 s against
# 4.3 s; `files` 330 MiB against 372 at the same 2.6 s; synthetic 1,000,000 rows about 390
# MiB against 415-454, its load step 2.8 s against 2.6 s.
DUCKDB_THREAD_MEMORY = 4096 * MiB


def normalize_workers(limits: ContainerLimits, cpus: float) -> int | None:
    """dlt's normalize process pool size for a container: one worker per whole CPU of its
    limit, as many as its memory holds; None outside a container (dlt's default, 1)."""
    if limits.cpu_limit is None and limits.memory_limit is None:
        return None
    workers = int(cpus)
    if limits.memory_limit is not None:
        workers = min(workers, limits.memory_limit // NORMALIZE_WORKER_MEMORY)
    return max(1, workers)


def normalize_in_one_process(row_bytes: int) -> bool:
    """Whether a step whose extracted packages hold `row_bytes` of row items skips the pool."""
    return row_bytes < POOL_MIN_ROW_BYTES


def adaptive_settings(
    limits: ContainerLimits,
    cpus: float,
    loader_file_format: str | None = None,
    destination_load_workers: int | None = None,
) -> dict[str, str]:
    """dlt config keys sized for the limits; empty outside a container.

    Load files (normalize's writer) rotate at a row count whose concurrent load jobs fit a
    quarter of the memory, budgeted per row for `loader_file_format` (a streamed format needs
    far less than insert_values: with the worst case a 4 GiB pod wrote 4,000-row files) and
    divided among the load workers the destination really runs (`destination_load_workers`,
    e.g. DuckDB's one). Fewer, larger jobs matter there: each DuckDB load job has a fixed
    cost, and 1,000,000 `products` rows loaded in 2.7 s as one job against 3.9 s as ten.
    Extracted files rotate at most every EXTRACT_FILE_ROWS rows, so that normalize's workers
    get several files to share.

    With a CPU limit of 2 or more, normalize runs on dlt's process pool (`normalize.workers`)
    even when memory is unlimited; buffers, file rotation and load workers need a memory limit.
    """
    workers = normalize_workers(limits, cpus)
    normalize = (
        {"normalize.workers": str(workers), "normalize.start_method": NORMALIZE_START_METHOD}
        if workers is not None and workers > 1
        else {}
    )
    if limits.memory_limit is None:
        return normalize
    memory = limits.memory_limit
    load_workers = max(1, min(20, memory // JOB_MEMORY, max(2, int(cpus * 4))))
    concurrent_jobs = destination_load_workers or load_workers
    # rows per load file: a quarter of the memory shared by the concurrent load jobs
    per_row = (
        STREAMED_BYTES_PER_JOB_ROW if loader_file_format in STREAMED_FORMATS else BYTES_PER_JOB_ROW
    )
    job_rows = int(memory // 4 // concurrent_jobs // per_row)
    job_rows = max(1_000, min(MAX_JOB_ROWS, job_rows // 1000 * 1000))
    extract_rows = min(EXTRACT_FILE_ROWS, job_rows)
    return {
        "data_writer.file_max_items": str(extract_rows),
        "normalize.data_writer.file_max_items": str(job_rows),
        "data_writer.buffer_max_items": str(min(5_000, extract_rows)),
        "load.workers": str(load_workers),
        "normalize.workers": "1",
        **normalize,
    }


def duckdb_threads(limits: ContainerLimits, cpus: float) -> int | None:
    """DuckDB's threads for the limits; None without a memory limit (DuckDB's default)."""
    if limits.memory_limit is None:
        return None
    return max(1, min(int(cpus), limits.memory_limit // DUCKDB_THREAD_MEMORY))
