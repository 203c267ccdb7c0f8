"""Normalize skips dlt's process pool when the extracted rows are too few to pay for it.

Real dlt, DuckDB and a local store; the pool is set up as the adaptive settings set it in a
pod with 2 CPUs (`normalize.workers` 2, forked), and forks are counted in this process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from flows.config.settings import config_value, platform_provider, platform_values
from flows.config.sizing import POOL_MIN_ROW_BYTES
from flows.durable.runner import runner
from flows.state import StateSession, open_store

FORKS = [0]
os.register_at_fork(after_in_parent=lambda: FORKS.__setitem__(0, FORKS[0] + 1))


@pytest.fixture(autouse=True)
def two_cpu_pod(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NORMALIZE__WORKERS", raising=False)
    platform_provider().replace({"normalize.workers": "2", "normalize.start_method": "fork"})
    yield
    platform_provider().replace({})


def arrow_items(rows: int) -> Any:
    @dlt.resource(name="items", write_disposition="append")
    def items() -> Iterator[pa.Table]:
        yield pa.table({"id": pa.array(range(rows), pa.int64())})

    return items


def row_items(rows: int) -> Any:
    @dlt.resource(name="items", write_disposition="append")
    def items() -> Iterator[dict[str, Any]]:
        for i in range(rows):  # digests: text that gzip cannot shrink much
            yield {"id": i, "digest": hashlib.sha256(str(i).encode()).hexdigest()}

    return items


def run(tmp_path: Path, source: Any) -> tuple[int, int]:
    """Forks during the run, and the rows loaded."""
    pipeline = dlt.pipeline(
        "pool_test",
        pipelines_dir=str(tmp_path / "pipes"),
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="d",
    )
    store = open_store(f"file://{tmp_path / 'store'}")
    before = FORKS[0]
    with StateSession(store, "pool_test", tmp_path / "pipes", lease_settle=0) as session:
        runner(pipeline, session=session).run(source, loader_file_format="parquet")
    forks = FORKS[0] - before
    with pipeline.sql_client() as sql:
        loaded = int(sql.execute_sql("SELECT COUNT(*) FROM items")[0][0])
    return forks, loaded


def test_arrow_rows_normalize_in_the_run_process(tmp_path: Path) -> None:
    assert run(tmp_path, arrow_items(200_000)) == (0, 200_000)
    assert config_value("normalize.workers") == "2"  # the pod's setting is back


def test_enough_row_items_normalize_on_the_pool(tmp_path: Path) -> None:
    # about 500 KB of compressed rows: several times the threshold
    assert POOL_MIN_ROW_BYTES < 300_000
    forks, loaded = run(tmp_path, row_items(12_000))
    assert loaded == 12_000
    assert forks >= 2  # both workers


def test_a_few_row_items_normalize_in_the_run_process(tmp_path: Path) -> None:
    assert run(tmp_path, row_items(200)) == (0, 200)


def test_a_configured_worker_count_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORMALIZE__WORKERS", "2")
    forks, loaded = run(tmp_path, arrow_items(1_000))
    assert (forks >= 1, loaded) == (True, 1_000)


def test_platform_values_last_for_the_block_only() -> None:
    with platform_values({"normalize.workers": "1", "load.workers": "3"}):
        assert (config_value("normalize.workers"), config_value("load.workers")) == ("1", "3")
    assert (config_value("normalize.workers"), config_value("load.workers")) == ("2", None)
