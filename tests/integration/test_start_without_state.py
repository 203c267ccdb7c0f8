"""A run that starts without state leaves the destination exact.

A run is killed with about a third of its load jobs committed; then its state is lost, by
the documented repair (`flows state unlock --yes`, `flows state drop --yes`) or by losing the
store's prefix. The next run, on a fresh disk, takes dlt's state from the destination (the
cursor of the last completed load), so it extracts the lost package's rows again: the rows
the dead run committed must go first. Real `flows` processes, PostgreSQL and DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import Destination, Result, exact, run_cli

ROWS = 30_000
FIRST = 12_000  # loaded completely by a first run: the destination holds its cursor
# every row of these tables must belong to a load in `_dlt_loads`
TABLES = ("events", "events__tags", "_dlt_pipeline_state")


class Counted(Destination):
    """The destination, counting also the rows of loads that `_dlt_loads` does not record."""

    def counts(self) -> dict[str, int]:
        counts = super().counts()
        counts["rows_of_unrecorded_loads"] = sum(
            self.one(
                f"SELECT COUNT(*) FROM synthetic.{table} t WHERE NOT EXISTS "
                "(SELECT 1 FROM synthetic._dlt_loads l WHERE l.load_id = t._dlt_load_id)"
            )
            for table in TABLES
        )
        return counts


@pytest.fixture(params=["postgres", "duckdb"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Counted:
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    return Counted(request.param, tmp_path, postgres)


def _drop(state: str, env: dict[str, str]) -> None:
    """The documented repair: revoke the dead run's lease, then delete the state."""
    for command in ("unlock", "drop"):
        result = run_cli(["state", command, "synthetic", "--state-url", state, "--yes"], env)
        assert result.code == 0, result.stderr[-2000:]


@pytest.mark.parametrize("repair", ["drop", "lost-prefix"])
def test_run_without_state_after_a_kill_during_load_is_exact(
    repair: str,
    destination: Counted,
    flows_env: dict[str, str],
    bucket: str,
    s3: Any,
    tmp_path: Path,
) -> None:
    state = f"s3://{bucket}/state"
    env = {
        **flows_env,
        **destination.env,
        # many small files and two load workers: the load takes several rounds of jobs
        "DATA_WRITER__FILE_MAX_ITEMS": "2000",
        "LOAD__WORKERS": "2",
        "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
        # `state drop` waits until it has seen the revoked lease unchanged for one TTL
        "STATE__LEASE_TTL": "8",
    }

    def run(pod: str, rows: int, kill_at: str | None = None) -> Result:
        args = ["run", "synthetic", "--state-url", state, "--pipelines-dir", str(tmp_path / pod)]
        return run_cli([*args, "--json"], {**env, "SOURCES__SYNTHETIC__ROWS": str(rows)}, kill_at)

    lose_state: Callable[[], None] = (
        (lambda: _drop(state, env))
        if repair == "drop"
        else (lambda: s3.rm(f"{bucket}/state", recursive=True))
    )

    assert run("pod1", FIRST).code == 0
    killed = run("pod2", ROWS, kill_at="load-third")
    assert killed.code == -9, f"harness did not kill: {killed.stderr[-2000:]}"
    partial = destination.counts()
    # some of the second load committed (root or nested rows: the first jobs to finish
    # may all be of one table), not all of it
    assert partial["rows_of_unrecorded_loads"] > 0, partial
    assert partial["events"] < ROWS, partial
    lose_state()

    resumed = run("pod3", ROWS)
    assert resumed.code == 0, resumed.stderr[-3000:]
    report = resumed.json()
    counts = destination.counts()
    assert {k: counts[k] for k in exact(ROWS)} == exact(ROWS), counts
    assert counts["loads"] == counts["distinct_loads"] == 2, counts
    assert counts["rows_of_unrecorded_loads"] == 0, counts
    # the cursor came from the destination: only the lost load's rows were extracted again
    assert report["extracted_rows"]["events"] == ROWS - FIRST, report
    # exactly the dead run's committed rows went; a table it committed nothing to is absent
    removed = report["resume"]["rows_removed"]
    assert removed.get("events", 0) == partial["events"] - FIRST, report["resume"]
    assert sum(removed.values()) == partial["rows_of_unrecorded_loads"], (partial, removed)
    assert len(report["resume"]["incomplete"]) == 1, report["resume"]

    # state lost once more: a run without state finds nothing to repair and changes nothing
    _drop(state, env)
    again = run("pod4", ROWS)
    assert again.code == 0, again.stderr[-3000:]
    assert again.json()["resume"]["rows_removed"] == {}
    assert again.json()["resume"]["incomplete"] == []
    assert again.json()["extracted_rows"].get("events", 0) == 0
    assert destination.counts() == counts
