"""The metrics exporter against a server holding thousands of finished flow runs.

    python -m tests.benchmarks.bench_exporter [--runs 5000] [--deployments 20] [--scrapes 10]

Creates the flow runs through the API of a local stack's Prefect server (PostgreSQL), each
ended Completed or Failed with one run record, then scrapes the exporter in this process
(`generate_latest` of its registry, what Prometheus' GET does): the first scrape (it reads
the whole lookback), steady scrapes (nothing new), and a scrape after 50 more runs ended.
Prints wall time and this process's CPU time per scrape. The exporter is its own process
reading the API: a flow run does no work for it beyond the one run record it always wrote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import httpx
from prefect.client.orchestration import get_client
from prometheus_client import CollectorRegistry, generate_latest

from devstack.ports import free_port
from devstack.stack import LocalStack
from flows.observe.collector import PlatformCollector
from flows.observe.reader import Reader
from flows.progress.records import RunRecord, record_key
from tests.integration.helpers import prefect_settings


def _api(stack: LocalStack) -> httpx.Client:
    user, password = stack.auth_string.split(":", 1)
    return httpx.Client(base_url=stack.api_url, auth=(user, password), timeout=60)


def _deployments(api: httpx.Client, count: int) -> list[tuple[str, str, str]]:
    """(flow id, deployment id, deployment name) of `count` deployments of one flow."""
    flow = api.post("/flows/", json={"name": "bench-exporter"}).json()["id"]
    found = []
    for i in range(count):
        name = f"bench-{i:02d}"
        body = {"name": name, "flow_id": flow, "entrypoint": "bench.py:flow"}
        found.append((flow, api.post("/deployments/", json=body).json()["id"], name))
    return found


def _finished_run(api: httpx.Client, deployment: tuple[str, str, str], i: int) -> None:
    flow, deployment_id, name = deployment
    body = {"flow_id": flow, "deployment_id": deployment_id, "state": {"type": "RUNNING"}}
    run = api.post("/flow_runs/", json=body).json()["id"]
    final = "COMPLETED" if i % 10 else "FAILED"
    api.post(f"/flow_runs/{run}/set_state", json={"state": {"type": final}, "force": True})
    record = RunRecord(name, f"pipeline-{name}", run, 1, final.lower(), 12.0, 6.0, 200 << 20)
    record.tables = {"events": 1000 + i, "events__tags": 2000}
    artifact = {"key": record_key(name), "type": "table", "flow_run_id": run}
    artifact["data"] = json.dumps([asdict(record)])
    api.post("/artifacts/", json=artifact).raise_for_status()


def _create(
    stack: LocalStack, deployments: list[tuple[str, str, str]], start: int, n: int
) -> float:
    started = time.perf_counter()
    with _api(stack) as api, ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: _finished_run(api, deployments[i % len(deployments)], i),
                range(start, start + n),
            )
        )
    return time.perf_counter() - started


def _scrape(registry: CollectorRegistry) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, bytes) of one scrape."""
    wall, cpu = time.perf_counter(), time.process_time()
    body = generate_latest(registry)
    return time.perf_counter() - wall, time.process_time() - cpu, len(body)


def _row(name: str, samples: list[tuple[float, float, int]]) -> str:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    size = samples[-1][2]
    return f"| {name} | {len(samples)} | {wall * 1e3:,.0f} ms | {cpu * 1e3:,.0f} ms | {size:,} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as root:
        stack = LocalStack(Path(root), api_port=free_port(avoid_plus=None))
        try:
            stack.up(deploy=False, worker=False)
            with _api(stack) as api:
                deployments = _deployments(api, args.deployments)
            made = _create(stack, deployments, 0, args.runs)
            print(f"{args.runs:,} finished flow runs and run records created in {made:.0f} s")
            with prefect_settings(stack):
                reader = Reader(
                    lambda: get_client(sync_client=True),
                    lookback=timedelta(hours=24),
                    min_interval=0,
                )
                registry = CollectorRegistry(auto_describe=False)
                registry.register(PlatformCollector(reader))
                first = [_scrape(registry)]
                steady = [_scrape(registry) for _ in range(args.scrapes)]
                _create(stack, deployments, args.runs, 50)
                after = [_scrape(registry)]
            counted = sum(reader.tally.runs_finished.values())
            assert counted == args.runs + 50, counted
            print("| scrape | n | wall (median) | exporter CPU (median) | bytes |")
            print("|---|---|---|---|---|")
            print(_row(f"first (reads {args.runs:,} runs and records)", first))
            print(_row("steady (nothing new)", steady))
            print(_row("after 50 more runs ended", after))
        finally:
            stack.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
