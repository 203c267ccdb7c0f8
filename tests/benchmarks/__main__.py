"""All benchmarks, interleaved, each sample in its own cgroup: `python -m tests.benchmarks`.

    python -m tests.benchmarks [--rows 1000000] [--small-rows 300000] [--big-rows 10000000]
                               [--rounds 3] [--suites products,files,...] (all by default)

Starts what it needs (SeaweedFS, PostgreSQL, a Prefect server; all outside the samples'
cgroups, as they would be outside a pod) and prints one markdown table: per variant the min
and median of wall time and cgroup peak memory; per comparison the median of the per-round
ratios (each round's ratio in brackets) against its goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pyarrow.parquet as pq

from tests.benchmarks import bench_checkpoints, pod
from tests.benchmarks.harness import (
    REPO,
    Comparison,
    GiB,
    Sample,
    Variant,
    interleave,
    ratio_rows,
    run_sample,
    variant_rows,
)
from tests.cgroups import run_limited

KILLER = REPO / "tests" / "integration" / "killer.py"
SUITES = (
    "products",
    "files",
    "synthetic",
    "checkpoints",
    "prefect",
    "big",
    "collector",
    "memory",
)
# older, single-purpose benchmarks: printed as they are
SCRIPTS = {
    "collector": "tests.benchmarks.bench_collector",
    "memory": "tests.benchmarks.bench_memory",
}


def _products_table(dsn: str, rows: int) -> None:
    import psycopg2

    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute(
            "CREATE TABLE products (id bigint PRIMARY KEY, name text, price numeric(12,2), "
            "stock int, description text, updated_at timestamptz NOT NULL)"
        )
        cur.execute(
            "INSERT INTO products SELECT i, 'product ' || i, (i % 100000) / 100.0, i % 1000, "
            "md5(i::text) || md5((i * 7)::text), "
            f"TIMESTAMPTZ '2024-01-01' + i * interval '1 second' FROM generate_series(1, {rows}) i"
        )
        cur.execute("ANALYZE products")


def _files(folder: Path, rows: int, parts: int = 10) -> None:
    folder.mkdir(parents=True)
    per = rows // parts
    for n in range(parts):
        ids = pa.array(range(n * per, (n + 1) * per), pa.int64())
        table = pa.table(
            {
                "id": ids,
                "name": pc.binary_join_element_wise("item ", ids.cast(pa.string()), ""),
                "amount": pc.divide(ids.cast(pa.float64()), 7.0),
                "flag": pc.equal(pc.bit_wise_and(ids, 1), 0),
            }
        )
        pq.write_table(table, folder / f"part{n}.parquet")
        pyarrow.csv.write_csv(table, folder / f"part{n}.csv")


def _kill_late_in_load(variant_limits: Variant) -> Callable[[Path, dict[str, str]], None]:
    """The untimed first attempt of a resume sample: SIGKILLed after its last load job."""

    def prepare(work: Path, env: dict[str, str]) -> None:
        cmd = [sys.executable, str(KILLER), "load-last", "run", "synthetic"]
        cmd += ["--pipelines-dir", str(work / "pod1")]
        proc, _ = run_limited(
            cmd,
            variant_limits.memory,
            {**env, "STATE__LOAD_SNAPSHOT_INTERVAL": "0"},
            timeout=3600,
            cpus=variant_limits.cpus,
            cwd=REPO,
        )
        if proc.returncode != -9:
            raise RuntimeError(f"the kill harness did not kill: {proc.stderr[-2000:]}")

    return prepare


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=300_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suites", default=",".join(SUITES))
    args = parser.parse_args()
    suites = args.suites.split(",")
    unknown = set(suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites {sorted(unknown)}; known: {', '.join(SUITES)}")

    from devstack.ports import free_port
    from devstack.postgres import Postgres
    from devstack.seaweedfs import SeaweedFS
    from devstack.stack import server_command, wait_ready

    base = Path(tempfile.mkdtemp(prefix="flows-bench-"))
    seaweed = SeaweedFS(base / "seaweedfs")
    postgres = Postgres(base / "postgres") if {"products", "checkpoints"} & set(suites) else None
    server: subprocess.Popen[bytes] | None = None
    env = {
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "PREFECT_HOME": str(base / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": str(REPO),
    }
    rows_out: list[str] = []
    ratios_out: list[str] = []

    def suite(
        title: str,
        variants: list[Variant],
        comparisons: list[Comparison],
        rounds: int,
        suite_env: dict[str, str],
    ) -> dict[str, list[Sample]]:
        print(f"  {title}", flush=True)
        samples = interleave(variants, rounds, base, {**os.environ, **env, **suite_env})
        rows, ratios = variant_rows(title, variants, samples), ratio_rows(comparisons, samples)
        print("\n".join(["", *rows, *ratios, ""]), flush=True)  # a long run shows as it goes
        rows_out.extend(rows)
        ratios_out.extend(ratios)
        return samples

    try:
        seaweed.start()
        seaweed.create_bucket("bench")
        env.update(seaweed.env())
        s3_state = {"STATE__URL": "s3://bench/{run}"}
        file_state = {"STATE__URL": "file://{work}/state"}

        if postgres is not None:
            postgres.start()
        if "products" in suites:
            assert postgres is not None
            postgres.create_database("shop")
            _products_table(postgres.dsn("shop"), args.rows)
            pg = {"SOURCES__PRODUCTS__CREDENTIALS": postgres.dsn("shop")}
            copy = Variant("psql \\copy + DuckDB read_csv", "copy_csv")
            variants = [copy] + [
                Variant(
                    f"products ({backend})",
                    "flows_run",
                    {"pipeline": "products"},
                    {**file_state, "SOURCES__PRODUCTS__BACKEND": backend},
                )
                for backend in ("connectorx", "pyarrow", "sqlalchemy")
            ]
            suite(
                f"products {args.rows:,} rows",
                variants,
                [
                    Comparison(f"{v.name} / {copy.name}, wall", v.name, copy.name, "wall", goal)
                    for v, goal in zip(variants[1:], (3.0, 3.0, None), strict=True)
                ],
                args.rounds,
                pg,
            )

        if "files" in suites:
            folder = base / "files"
            _files(folder, args.rows)
            duck = Variant(
                "DuckDB read_parquet + read_csv", "duckdb_files", {"folder": str(folder)}
            )
            pipeline = Variant("files pipeline", "flows_run", {"pipeline": "files"}, file_state)
            suite(
                f"files {args.rows:,} rows as Parquet and CSV (10 files each)",
                [duck, pipeline],
                [
                    Comparison(
                        f"{pipeline.name} / {duck.name}, wall",
                        pipeline.name,
                        duck.name,
                        "wall",
                        3.0,
                    )
                ],
                args.rounds,
                {
                    "SOURCES__FILES__BUCKET_URL": folder.as_uri(),
                    "SOURCES__FILES__FORMATS": '["csv", "parquet"]',
                },
            )

        if "checkpoints" in suites:
            assert postgres is not None
            variants, comparisons = bench_checkpoints.cost_variants(args.rows)
            suite(
                f"checkpointed extract, ordered source {args.rows:,} rows",
                variants,
                comparisons,
                args.rounds,
                {},
            )
            postgres.create_database("jobs")
            for row, ratio in (
                bench_checkpoints.reread_after_kill(base, {**os.environ, **env}),
                bench_checkpoints.jobs_after_load_kill(
                    base, {**os.environ, **env}, postgres.dsn("jobs")
                ),
            ):
                print(f"{row}\n{ratio}", flush=True)
                rows_out.append(row)
                ratios_out.append(ratio)

        if "prefect" in suites:
            port = free_port(avoid_plus=None)
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            server = subprocess.Popen(
                server_command(port),
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if not wait_ready(env["PREFECT_API_URL"], 180, lambda: server.poll() is None):
                raise RuntimeError("the Prefect server did not become ready")
            deployment = pod.deploy(env["PREFECT_API_URL"])

        if "synthetic" in suites or "prefect" in suites:
            for rows in sorted({args.small_rows, args.rows}):
                plain = Variant("plain pipeline.run()", "plain")
                variants = [plain]
                comparisons = []
                if "prefect" in suites:
                    prefect = Variant(
                        "Prefect flow + isolated attempt + S3", "prefect_flow", env=s3_state
                    )
                    in_process = Variant(
                        "Prefect flow, attempt in-process (isolate=False) + S3",
                        "prefect_flow",
                        {"isolate": False},
                        s3_state,
                    )
                    api = env["PREFECT_API_URL"]
                    in_pod = pod.pod_variant(
                        "flow run as its pod runs it",
                        pod.platform_command_line(),
                        api,
                        deployment,
                        s3_state,
                    )
                    # reference: the same pod with Prefect's default command
                    prefect_pod = pod.pod_variant(
                        "flow run with Prefect's pod command",
                        pod.prefect_command_line(),
                        api,
                        deployment,
                        s3_state,
                    )
                    variants += [prefect, in_process, in_pod, prefect_pod]
                    pod_path = "Prefect path (flow run as its pod runs it) / plain"
                    comparisons += [
                        Comparison(
                            f"{pod_path}, wall, {rows:,} rows",
                            in_pod.name,
                            plain.name,
                            "wall",
                            1.15,
                        ),
                        Comparison(
                            f"{pod_path}, cgroup peak, {rows:,} rows",
                            in_pod.name,
                            plain.name,
                            "peak",
                            1.30,
                        ),
                        Comparison(
                            f"Prefect's pod command / plain, wall, {rows:,} rows",
                            prefect_pod.name,
                            plain.name,
                            "wall",
                            None,
                        ),
                        Comparison(
                            f"Prefect's pod command / plain, cgroup peak, {rows:,} rows",
                            prefect_pod.name,
                            plain.name,
                            "peak",
                            None,
                        ),
                        # the same flow called from a Python process: no pod command, so
                        # Prefect's import and the attempt's import of dlt run in series
                        Comparison(
                            f"flow called in-process / plain, wall, {rows:,} rows",
                            prefect.name,
                            plain.name,
                            "wall",
                            None,
                        ),
                        Comparison(
                            f"flow called in-process / plain, cgroup peak, {rows:,} rows",
                            prefect.name,
                            plain.name,
                            "peak",
                            None,
                        ),
                        Comparison(
                            f"isolate=False / plain, wall, {rows:,} rows",
                            in_process.name,
                            plain.name,
                            "wall",
                            None,
                        ),
                        Comparison(
                            f"isolate=False / plain, cgroup peak, {rows:,} rows",
                            in_process.name,
                            plain.name,
                            "peak",
                            None,
                        ),
                    ]
                if "synthetic" in suites and rows == args.rows:
                    flows_run = Variant("flows run + S3 snapshots", "flows_run", env=s3_state)
                    one_cpu = Variant("plain pipeline.run(), 1 CPU", "plain", cpus=1.0)
                    arrow = Variant(
                        "plain pipeline.run(), arrow rows", "plain", {"source": "arrow"}
                    )
                    resume = Variant(
                        "resume after kill late in load", "flows_run", {"pod": "pod2"}, s3_state
                    )
                    resume = Variant(
                        resume.name,
                        resume.kind,
                        resume.args,
                        resume.env,
                        prepare=_kill_late_in_load(resume),
                    )
                    variants += [flows_run, one_cpu, arrow, resume]
                    comparisons += [
                        Comparison(
                            "flows run + S3 / plain, wall", flows_run.name, plain.name, "wall", 1.05
                        ),
                        Comparison(
                            "flows run + S3 / plain, cgroup peak",
                            flows_run.name,
                            plain.name,
                            "peak",
                            1.05,
                        ),
                        Comparison(
                            "normalize time, 2 CPUs / 1 CPU",
                            plain.name,
                            one_cpu.name,
                            "normalize_s",
                            0.6,
                        ),
                        Comparison(
                            "resume after late kill / rerun from scratch, wall",
                            resume.name,
                            flows_run.name,
                            "wall",
                            0.25,
                        ),
                        Comparison(
                            "arrow rows / row dicts (no nested table), wall",
                            arrow.name,
                            plain.name,
                            "wall",
                            None,
                        ),
                    ]
                if len(variants) > 1:
                    suite(
                        f"synthetic {rows:,} rows",
                        variants,
                        comparisons,
                        args.rounds,
                        {"SOURCES__SYNTHETIC__ROWS": str(rows)},
                    )

        if "big" in suites:
            big = Variant(
                f"flows run + S3, {args.big_rows:,} rows",
                "flows_run",
                env={**s3_state, "BENCH_CHECK_TABLE": "synthetic.events"},
                memory=1 * GiB,
            )
            print(f"  synthetic {args.big_rows:,} rows under 1 GiB", flush=True)
            sample = run_sample(
                big, base, {**os.environ, **env, "SOURCES__SYNTHETIC__ROWS": str(args.big_rows)}
            )
            exact = sample.figures["count"] == sample.figures["distinct"] == args.big_rows
            rows_out.append(
                f"| {big.name} (2 CPU, 1 GiB) | 1 | {sample.wall:.2f} s | "
                f"{sample.peak / 2**20:,.0f} MiB |"
            )
            ratios_out.append(
                f"| {args.big_rows:,} rows under 1 GiB: {sample.figures['count']:,} rows, "
                f"{sample.figures['distinct']:,} distinct ids | - | completes, exact | "
                f"{'met' if exact else 'MISSED'} |"
            )

        for name, module in SCRIPTS.items():
            if name in suites:
                print(f"  {module}", flush=True)
                extra = ["--rows", str(args.rows)] if name == "collector" else []
                subprocess.run([sys.executable, "-m", module, *extra], check=True, cwd=REPO)

        cpu = platform.processor() or platform.machine()
        print(
            f"\n{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores ({cpu}), "
            f"{psutil.virtual_memory().total / GiB:.0f} GB, shared; {args.rounds} rounds, "
            f"interleaved\n"
        )
        print(
            "| variant (cgroup limits) | samples | wall min / median | cgroup peak min / median |"
        )
        print("|---|---|---|---|")
        print("\n".join(rows_out))
        print("\n| comparison | median of per-round ratios (each round) | goal | |")
        print("|---|---|---|---|")
        print("\n".join(ratios_out))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if postgres is not None:
            postgres.stop()
        seaweed.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
