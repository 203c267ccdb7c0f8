"""API calls and overhead of the PrefectCollector, against a real Prefect server.

    python -m tests.benchmarks.bench_collector [--rows 1000000] [--small 10000]

Runs the synthetic pipeline through the platform runner twice per size, with and without the
collector, each in its own process, and prints the number of Prefect API calls the collector
made (it must not grow with rows) and its wall-time overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.stack import server_command, wait_ready


def child(rows: int, with_collector: bool, home: str) -> dict[str, Any]:
    """One run in this process; prints calls and wall time."""
    os.environ.update(
        {
            "SOURCES__SYNTHETIC__ROWS": str(rows),
            "FLOWS_HOME": home,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
    )
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.durable.run import run_pipeline
    from flows.prefect.collector import PrefectCollector
    from flows.progress.artifacts import RunTarget

    @flow(name="bench")
    def bench() -> None:
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(bench)
    collector = PrefectCollector(RunTarget(run.id)) if with_collector else None
    started = time.perf_counter()
    report = run_pipeline("synthetic", progress=collector, listener=collector)
    if collector is not None:
        collector.on_run_finished(report, "completed")
        collector.close()
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "calls": collector.sink.calls if collector else 0,
        "failures": collector.sink.failures if collector else 0,
        "rows": report.loaded_rows.get("events", 0),
    }


def run_child(rows: int, with_collector: bool, env: dict[str, str]) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="flows-bench-home-")
    code = (
        "import json, sys; from tests.benchmarks.bench_collector import child; "
        "print('RESULT' + json.dumps(child(int(sys.argv[1]), sys.argv[2] == '1', sys.argv[3])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(rows), "1" if with_collector else "0", home],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return dict(json.loads(line[6:]))
    raise RuntimeError(proc.stderr[-3000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    port = free_port(avoid_plus=None)
    home = tempfile.mkdtemp(prefix="flows-bench-prefect-")
    env = {
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    server = subprocess.Popen(
        server_command(port),
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_ready(env["PREFECT_API_URL"], 120, lambda: server.poll() is None):
            raise RuntimeError("the Prefect server did not become ready")
        results = {}
        for rows in (args.small, args.rows):
            for with_collector in (False, True):
                r = run_child(rows, with_collector, env)
                results[(rows, with_collector)] = r
                print(
                    f"  rows {rows:>9,}  collector {'on ' if with_collector else 'off'}  "
                    f"wall {r['wall']:7.2f} s  API calls {r['calls']:4}  failed {r['failures']}"
                )
        small, large = results[(args.small, True)], results[(args.rows, True)]
        overhead = large["wall"] / results[(args.rows, False)]["wall"]
        print("ratios:")
        print(
            f"  API calls at {args.rows:,} rows vs {args.small:,} rows: {large['calls']} vs "
            f"{small['calls']} (+{large['calls'] - small['calls']}; grows with steps and "
            "seconds, not rows)"
        )
        print(f"  wall with collector / without at {args.rows:,} rows: {overhead:.3f}x")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
