"""No work done twice: a checkpointed extract resumes after its last segment, and a load
killed part way reloads only the jobs that had not committed.

Real SeaweedFS (the state store), PostgreSQL and DuckDB; the source is a slow, ordered HTTP
API on loopback (ordered_api.py, ordered_source.py: an append table, its nested table and a
merge table). Every run is a `flows` process on a fresh pipelines dir (a fresh pod); a kill
is SIGKILL of the whole process group.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import Destination, Result, run_cli
from tests.integration.ordered_api import OrderedApi

ROWS, PAGE, DELAY = 400, 20, 0.1
EVERY = 1.0  # seconds between checkpoints
SOURCE = "tests.integration.ordered_source:ordered"


@pytest.fixture
def api() -> Iterator[OrderedApi]:
    running = OrderedApi(ROWS, PAGE, DELAY).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    return Destination(request.param, tmp_path, postgres)


def ordered_args(state: str, pod: Path, *more: str) -> list[str]:
    return [
        "run", SOURCE, "--name", "ordered", "--dataset", "ordered", "--state-url", state,
        "--pipelines-dir", str(pod), "--checkpoint-every", str(EVERY), *more,
    ]  # fmt: skip


def ordered_env(flows_env: dict[str, str], api: OrderedApi, dest: Destination) -> dict[str, str]:
    return {
        **flows_env,
        **dest.env,
        "SOURCES__ORDERED__URL": api.url,
        "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
    }


def assert_ordered_exact(dest: Destination) -> None:
    """Every id once in the append table and its nested table, every key once in the merge
    table, no load twice."""
    one = dest.one
    assert one("SELECT COUNT(*) FROM ordered.items") == ROWS
    assert one("SELECT COUNT(DISTINCT id) FROM ordered.items") == ROWS
    assert one("SELECT MAX(id) FROM ordered.items") == ROWS
    assert one("SELECT COUNT(*) FROM ordered.items__tags") == ROWS
    assert (
        one(
            "SELECT COUNT(*) FROM ordered.items__tags t WHERE NOT EXISTS "
            "(SELECT 1 FROM ordered.items i WHERE i._dlt_id = t._dlt_root_id)"
        )
        == 0
    )
    assert one("SELECT COUNT(*) FROM ordered.accounts") == ROWS
    assert one("SELECT COUNT(DISTINCT id) FROM ordered.accounts") == ROWS
    loads = one("SELECT COUNT(*) FROM ordered._dlt_loads")
    assert loads == one("SELECT COUNT(DISTINCT load_id) FROM ordered._dlt_loads")


@pytest.mark.parametrize("share", [0.2, 0.5, 0.8])
def test_a_checkpointed_extract_killed_resumes_after_its_last_segment(
    share: float,
    api: OrderedApi,
    destination: Destination,
    flows_env: dict[str, str],
    bucket: str,
    tmp_path: Path,
) -> None:
    """Killed at 20%, 50% and 80% of its extract, the rerun on a fresh pod asks the source
    again for at most one interval's pages, and every id is there once."""
    state, env = f"s3://{bucket}/state", ordered_env(flows_env, api, destination)
    total_pages = 2 * (api.pages_per_resource + 1)  # each resource ends on an empty page
    first = api.run_killed_at(
        round(share * total_pages), ordered_args(state, tmp_path / "pod-a"), env
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    before = set(api.pages_served())

    del api.served[:]
    rerun = run_cli(ordered_args(state, tmp_path / "pod-b", "--json"), env)
    assert rerun.code == 0, rerun.stderr[-3000:]
    assert_ordered_exact(destination)
    again = [key for key in api.pages_served() if key in before]
    # one interval's pages (both resources share the extract's time), the page each resource
    # was reading when the bound passed, and the page the kill interrupted
    assert len(again) <= math.ceil(EVERY / DELAY) + 3, (again, sorted(before))
    report = rerun.json()["checkpoints"]
    assert report["every"] == EVERY and report["segments"], report
    if share >= 0.5:  # segments were committed before the kill: their pages are not read
        assert report["resumed_segments"] >= 1 and report["rows_not_extracted"] > 0, report
        assert len(before) - len(again) >= math.ceil(EVERY / DELAY), (again, sorted(before))


@pytest.mark.parametrize("point", ["segment-load", "segment-snapshot"])
def test_a_kill_during_a_segments_load_or_its_snapshot_is_exact(
    point: str,
    api: OrderedApi,
    destination: Destination,
    flows_env: dict[str, str],
    bucket: str,
    tmp_path: Path,
) -> None:
    state, env = f"s3://{bucket}/state", ordered_env(flows_env, api, destination)
    first = run_cli(ordered_args(state, tmp_path / "pod-a"), env, kill_at=point)
    assert first.code == -9, f"harness did not kill at {point}: {first.stderr[-2000:]}"
    rerun = run_cli(ordered_args(state, tmp_path / "pod-b", "--json"), env)
    assert rerun.code == 0, rerun.stderr[-3000:]
    assert_ordered_exact(destination)
    # the pending package of the killed segment was finished, not extracted again
    assert rerun.json()["resume"]["normalized"], rerun.json()["resume"]


def test_a_load_of_many_jobs_killed_at_60_percent_reloads_only_the_jobs_in_flight(
    postgres: object, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """A package of more than 100 load jobs into PostgreSQL, killed once 60% of them
    completed: the rerun proves which committed and loads only the others."""
    rows = 24_000
    dest = Destination("postgres", tmp_path, postgres)
    env = {
        **flows_env,
        **dest.env,
        "SOURCES__SYNTHETIC__ROWS": str(rows),
        "DATA_WRITER__FILE_MAX_ITEMS": "400",  # 60 `events` jobs, 120 `events__tags`
        "LOAD__WORKERS": "2",
    }
    state = f"s3://{bucket}/state"
    args = ["run", "synthetic", "--state-url", state]
    first = run_cli([*args, "--pipelines-dir", str(tmp_path / "pod-a")], env, kill_at="load-60")
    assert first.code == -9, f"harness did not kill: {first.stderr[-2000:]}"
    done, total = killed_at_jobs(first)
    assert total >= 100 and 5 * done >= 3 * total, (done, total)

    rerun = run_cli([*args, "--pipelines-dir", str(tmp_path / "pod-b"), "--json"], env)
    assert rerun.code == 0, rerun.stderr[-3000:]
    dest.assert_exact(rows)
    resume = rerun.json()["resume"]
    assert resume["resumed_jobs"] == resume["normalized"] and resume["reset"] == [], resume
    # every job the dead run saw complete, and at most the jobs it had in flight besides
    assert done <= resume["jobs_skipped"] <= done + 2, (done, resume)
    assert resume["jobs_skipped"] + resume["jobs_reloaded"] == total, (total, resume)
    assert resume["rows_removed"] == {}, resume


def killed_at_jobs(result: Result) -> tuple[int, int]:
    """The load jobs done and in all when the harness killed the run (it says so)."""
    line = next(x for x in result.stderr.splitlines() if x.startswith("killer: SIGKILL"))
    done, _, total = line.rsplit("(", 1)[1].split()[:3]
    return int(done), int(total)


def test_checkpoint_every_on_a_source_without_an_ordered_cursor_is_refused(
    flows_env: dict[str, str], bucket: str, s3: Any, tmp_path: Path
) -> None:
    """One line naming the resource and why, exit 2, no snapshot and no destination."""
    dest = Destination("duckdb", tmp_path)
    args = [
        "run", "tests.integration.plain_append:plain", "--name", "plain",
        "--state-url", f"s3://{bucket}/state", "--pipelines-dir", str(tmp_path / "pod"),
        "--checkpoint-every", "5",
    ]  # fmt: skip
    result = run_cli(args, {**flows_env, **dest.env})
    assert result.code == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "resource 'events' has no incremental cursor" in last, last
    assert "CHECKPOINT_EVERY" in last and "row_order='asc'" in last, last
    assert not dest.path.exists()
    assert not [p for p in s3.find(bucket) if "/manifests/" in p]
