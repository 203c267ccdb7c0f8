"""dlt's defaults vs the platform's adaptive settings inside a real 512 MiB memory cgroup.

    python -m tests.benchmarks.bench_memory [--rows 50000] [--limit-mib 512]

Same rows, same loader format (insert_values, dlt's default for DuckDB); prints the outcome,
wall time and the cgroup's peak memory of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.cgroups import run_limited

HERE = Path(__file__).parents[1] / "integration"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--limit-mib", type=int, default=512)
    args = parser.parse_args()
    limit = args.limit_mib * 2**20
    work = Path(tempfile.mkdtemp(prefix="flows-bench-mem-"))
    env = {
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "FLOWS_HOME": str(work / "home"),
        "SOURCES__SYNTHETIC__ROWS": str(args.rows),
    }
    variants = {
        "dlt defaults": [
            sys.executable,
            str(HERE / "plain_dlt.py"),
            str(args.rows),
            str(work / "plain.duckdb"),
            str(work / "plain"),
        ],
        "platform adaptive": [
            sys.executable,
            "-m",
            "flows",
            "run",
            "synthetic",
            "--pipelines-dir",
            str(work / "pods"),
        ],
    }
    extra = {
        "platform adaptive": {
            "PIPELINES__SYNTHETIC__LOADER_FILE_FORMAT": "insert_values",
            "DESTINATION__DUCKDB__CREDENTIALS": str(work / "adaptive.duckdb"),
            "STATE__URL": f"file://{work / 'state'}",
        }
    }
    print(f"{args.rows:,} rows, memory limit {args.limit_mib} MiB, loader format insert_values")
    for name, cmd in variants.items():
        started = time.perf_counter()
        proc, peak = run_limited(cmd, limit, {**os.environ, **env, **extra.get(name, {})})
        outcome = (
            "OOM-killed"
            if proc.returncode == -9
            else ("completed" if proc.returncode == 0 else f"exit {proc.returncode}")
        )
        print(
            f"  {name:18} {outcome:11} wall {time.perf_counter() - started:6.1f} s  "
            f"cgroup peak {peak / 2**20:6.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
