"""Kill -9 a pipeline at each step; a new process with an empty disk finishes it exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import Result, exact, run_args, run_cli, synthetic_counts

ROWS = 30_000


def _env(flows_env: dict[str, str], tmp_path: Path, attempt: str) -> dict[str, str]:
    return {
        **flows_env,
        "SOURCES__SYNTHETIC__ROWS": str(ROWS),
        # many small files: several extract batches and load jobs to kill between
        "DATA_WRITER__FILE_MAX_ITEMS": "5000",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
        "LOAD__WORKERS": "2",
    }


@pytest.mark.parametrize("point", ["extract", "normalize", "load-first", "load-last"])
def test_kill_and_resume_on_fresh_disk(
    point: str, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    state = f"s3://{bucket}/state"
    env = _env(flows_env, tmp_path, point)
    first = run_cli(
        run_args(state, tmp_path / "pod1"),
        env,
        kill_at=point,
    )
    assert first.code == -9, f"harness did not kill at {point}: {first.stderr[-2000:]}"

    second = run_cli(
        run_args(state, tmp_path / "pod2", "--json"),
        env,
    )
    assert second.code == 0, second.stderr[-3000:]
    report = second.json()
    counts = synthetic_counts(tmp_path / "warehouse.duckdb")
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS)
    assert counts["loads"] == counts["distinct_loads"]

    resume = report["resume"]
    if point.startswith("load"):
        # the dead pod had extracted and normalized everything: nothing is extracted again
        assert resume["normalized"], report
        assert report["extracted_rows"].get("events", 0) == 0
        assert counts["loads"] == 1
    if point == "load-last":
        # every job had committed but `_dlt_loads` had not: only the load record is written
        assert resume["completed"] == resume["normalized"], resume
        assert resume["reset"] == [] and resume["rows_removed"] == {}
    if point == "load-first":
        # some jobs had committed (DuckDB's Parquet job is one statement): they are proven by
        # their rows and not loaded again, the rest load
        assert resume["resumed_jobs"] == resume["normalized"], resume
        assert resume["jobs_skipped"] >= 1 and resume["jobs_reloaded"] >= 1, resume
        assert resume["reset"] == [] and resume["completed"] == []
    if point == "normalize":
        assert resume["extracted"], report
        assert report["extracted_rows"].get("events", 0) == 0

    # a third run has nothing left to do and changes nothing
    third = run_cli(
        run_args(state, tmp_path / "pod3", "--json"),
        env,
    )
    assert third.code == 0, third.stderr[-3000:]
    assert third.json()["extracted_rows"].get("events", 0) == 0
    assert synthetic_counts(tmp_path / "warehouse.duckdb") == counts


@pytest.mark.parametrize("point", ["normalize", "load-first"])
def test_packages_normalized_by_workers_resume_exactly(
    point: str, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """dlt's normalize process pool (forked workers, as in a pod with 2 CPUs): killed while
    the workers run or after they committed, the package resumes on a fresh disk."""
    state = f"s3://{bucket}/state"
    env = {
        **_env(flows_env, tmp_path, point),
        "NORMALIZE__WORKERS": "2",
        "NORMALIZE__START_METHOD": "fork",
    }

    def run(pod: str, kill_at: str | None = None) -> Result:
        return run_cli(run_args(state, tmp_path / pod, "--json"), env, kill_at=kill_at)

    first = run("pod1", kill_at=point)
    assert first.code == -9, f"harness did not kill at {point}: {first.stderr[-2000:]}"
    second = run("pod2")
    assert second.code == 0, second.stderr[-3000:]
    report = second.json()
    counts = synthetic_counts(tmp_path / "warehouse.duckdb")
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS)
    assert counts["loads"] == counts["distinct_loads"] == 1
    assert report["extracted_rows"].get("events", 0) == 0
    if point == "normalize":  # the extracted package is normalized again, by the workers
        assert report["resume"]["extracted"] and report["normalized_rows"]["events"] == ROWS
    else:  # the workers' normalized package was snapshotted and is only loaded
        assert report["resume"]["normalized"] and not report["normalized_rows"].get("events")
