"""Benchmarks of the resumable runner against plain dlt, measured side by side in one run.

    python -m tests.benchmarks.bench_state [--rows 1000000]

Every variant runs in its own process (peak RSS is per process) on the same synthetic rows,
against a real SeaweedFS started here. Prints each figure and the ratios with their goals:

  runner + S3 snapshots  vs plain pipeline.run(), same dlt settings    wall <= 1.10x, RSS <= 1.10x
  resume after kill in load (fresh disk) vs rerun from scratch         wall <= 0.40x
  snapshot upload        vs raw s3fs put of the same bytes             throughput >= 0.8x
  platform settings      vs dlt defaults                               wall <= 0.2x, RSS <= 0.05x
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import s3fs

KILLER = Path(__file__).parents[1] / "integration" / "killer.py"


# children ------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_plain(workdir: Path, platform_settings: bool) -> dict[str, Any]:
    """dlt alone: `pipeline.run()` with or without the platform's settings."""
    import dlt

    from flows.pipelines import get_spec
    from flows.settings import apply_platform_defaults

    spec = get_spec("synthetic")
    if platform_settings:
        apply_platform_defaults(spec.destination_name(), spec.name)
    started = time.perf_counter()
    pipeline = dlt.pipeline(
        "synthetic",
        pipelines_dir=str(workdir / "pipes"),
        dataset_name="synthetic",
        destination=dlt.destinations.duckdb(str(workdir / "plain.duckdb")),
    )
    kwargs = {"loader_file_format": spec.loader_file_format()} if platform_settings else {}
    pipeline.run(spec.build_source(), **kwargs)
    return {"wall": time.perf_counter() - started}


def child_platform(workdir: Path, state_url: str, pod: str) -> dict[str, Any]:
    """The platform: lease, restore, runner, S3 snapshots at every step."""
    from flows.run import run_pipeline

    os.environ["DESTINATION__DUCKDB__CREDENTIALS"] = str(workdir / "platform.duckdb")
    started = time.perf_counter()
    report = run_pipeline("synthetic", state_url=state_url, pipelines_dir=workdir / pod)
    assert report.snapshots is not None
    return {
        "wall": time.perf_counter() - started,
        "snapshot_s": report.snapshots.seconds,
        "uploaded_mb": report.snapshots.bytes_uploaded / 2**20,
        "resumed": report.resume.normalized,
        "extracted": report.extracted_rows.get("events", 0),
    }


def child_upload(workdir: Path, state_url: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Cold snapshot publish of a working dir vs `s3fs.put` of the same files."""
    from flows.state import StateSession, open_store
    from flows.state.snapshot import describe_working_dir

    source_dir = workdir / "upload-src"
    fs = s3fs.S3FileSystem(**opts, skip_instance_cache=True)
    session = StateSession(open_store(state_url), "synthetic", source_dir, lease_settle=0)
    session.open()
    _entries, _dirs, sources = describe_working_dir(session.working_dir, session._cache)
    size = sum(os.path.getsize(p) for p in sources.values())
    started = time.perf_counter()
    session.snapshot("bench")
    snap = time.perf_counter() - started
    session.close(collect=False)
    bucket = state_url.split("/")[2]
    started = time.perf_counter()
    fs.put(list(sources.values()), [f"{bucket}/raw/{i}" for i in range(len(sources))])
    raw = time.perf_counter() - started
    return {"bytes": size, "snapshot_s": snap, "raw_s": raw}


def run_child(kind: str, **kwargs: Any) -> dict[str, Any]:
    code = (
        "import json, sys; from tests.benchmarks import bench_state as b; "
        f"r = b.child_{kind}(**b._decode(sys.argv[1])); r['rss_mb'] = b._peak_rss_mb(); "
        "print('RESULT' + json.dumps(r))"
    )
    arg = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    proc = subprocess.run(
        [sys.executable, "-c", code, arg],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return dict(json.loads(line[6:]))
    raise RuntimeError(f"benchmark child {kind} failed:\n{proc.stderr[-3000:]}")


def _decode(arg: str) -> dict[str, Any]:
    raw = json.loads(arg)
    return {k: Path(v) if k == "workdir" else v for k, v in raw.items()}


# driver --------------------------------------------------------------------------------------


def ratio(name: str, value: float, goal: str, ok: bool) -> str:
    return f"  {name:58} {value:6.3f}x  goal {goal:8} {'OK' if ok else 'MISSED'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--skip-dlt-defaults",
        action="store_true",
        help="skip the slow dlt-defaults run (about 9 GB, 3+ minutes at 1M)",
    )
    args = parser.parse_args()

    from flows.services import SeaweedFS

    base = Path(tempfile.mkdtemp(prefix="flows-bench-"))
    seaweed = SeaweedFS(base / "seaweedfs")
    seaweed.start()
    os.environ.update(seaweed.env())
    os.environ["SOURCES__SYNTHETIC__ROWS"] = str(args.rows)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["FLOWS_HOME"] = str(base / "home")
    try:
        seaweed.create_bucket("bench")
        results: dict[str, dict[str, Any]] = {}
        print(f"rows: {args.rows:,}  (workdir {base})")

        def measure(label: str, kind: str, **kw: Any) -> dict[str, Any]:
            work = base / label
            work.mkdir(parents=True, exist_ok=True)
            result = run_child(kind, workdir=work, **kw)
            results[label] = result
            print(
                f"  {label:30} wall {result.get('wall', 0):8.2f} s  "
                f"peak RSS {result['rss_mb']:8.1f} MB"
            )
            return result

        plain = measure("plain dlt (platform settings)", "plain", platform_settings=True)
        platform = measure(
            "platform runner + S3", "platform", state_url="s3://bench/full", pod="pod1"
        )

        # kill in load, then resume on a fresh disk
        work = base / "resume after kill in load"  # measure() runs in the same folder
        work.mkdir(parents=True)
        env = {
            **os.environ,
            "DESTINATION__DUCKDB__CREDENTIALS": str(work / "platform.duckdb"),
            "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
        }
        killed = subprocess.run(
            [
                sys.executable,
                str(KILLER),
                "load-last",
                "run",
                "synthetic",
                "--state-url",
                "s3://bench/resume",
                "--pipelines-dir",
                str(work / "pod1"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if killed.returncode != -9:
            raise RuntimeError(f"kill harness did not kill: {killed.stderr[-2000:]}")
        resume = measure(
            "resume after kill in load", "platform", state_url="s3://bench/resume", pod="pod2"
        )
        assert resume["extracted"] == 0 and resume["resumed"], resume

        # snapshot upload throughput: the normalized working dir of a killed run
        upload_src = base / "upload" / "upload-src" / "synthetic"
        shutil.copytree(work / "pod1" / "synthetic", upload_src)
        upload = run_child(
            "upload",
            workdir=base / "upload",
            state_url="s3://bench/upload",
            opts=seaweed.storage_options(),
        )
        print(
            f"  {'snapshot upload':30} {upload['bytes'] / 2**20:8.1f} MB in "
            f"{upload['snapshot_s']:.2f} s; raw s3fs put {upload['raw_s']:.2f} s"
        )

        defaults = None
        if not args.skip_dlt_defaults:
            defaults = measure("plain dlt (dlt defaults)", "plain", platform_settings=False)

        print("ratios:")
        lines = [
            ratio(
                "runner+S3 / plain pipeline.run(), wall",
                platform["wall"] / plain["wall"],
                "<= 1.10",
                platform["wall"] / plain["wall"] <= 1.10,
            ),
            ratio(
                "runner+S3 / plain pipeline.run(), peak RSS",
                platform["rss_mb"] / plain["rss_mb"],
                "<= 1.10",
                platform["rss_mb"] / plain["rss_mb"] <= 1.10,
            ),
            ratio(
                "resume after kill in load / rerun from scratch, wall",
                resume["wall"] / platform["wall"],
                "<= 0.40",
                resume["wall"] / platform["wall"] <= 0.40,
            ),
            ratio(
                "snapshot upload / raw s3fs put, throughput",
                upload["raw_s"] / upload["snapshot_s"],
                ">= 0.80",
                upload["raw_s"] / upload["snapshot_s"] >= 0.80,
            ),
        ]
        if defaults:
            lines += [
                ratio(
                    "platform settings / dlt defaults, wall",
                    plain["wall"] / defaults["wall"],
                    "<= 0.20",
                    plain["wall"] / defaults["wall"] <= 0.20,
                ),
                ratio(
                    "platform settings / dlt defaults, peak RSS",
                    plain["rss_mb"] / defaults["rss_mb"],
                    "<= 0.05",
                    plain["rss_mb"] / defaults["rss_mb"] <= 0.05,
                ),
            ]
        print("\n".join(lines))
        return 0
    finally:
        seaweed.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
