"""Sizing, quantities and recommendations: the arithmetic behind adaptive settings and tune."""

from __future__ import annotations

import pytest
from dlt.normalize.worker import group_worker_files

from flows.config.sizing import adaptive_settings, duckdb_threads
from flows.kube.tuning import TuneError, covers, recommend
from flows.progress.records import RunRecord
from flows.system.quantities import cpu_cores, format_cpu, format_memory, memory_bytes
from flows.system.resources import ContainerLimits

MiB = 2**20


def record(peak_mib: float, cpu_s: float = 10.0, wall: float = 20.0, **kw: object) -> RunRecord:
    return RunRecord(
        deployment="d",
        pipeline="p",
        flow_run_id="x",
        attempt=1,
        outcome=str(kw.pop("outcome", "completed")),
        wall_seconds=wall,
        cpu_seconds=cpu_s,
        peak_rss_bytes=int(peak_mib * MiB),
        **kw,
    )  # type: ignore[arg-type]


def test_quantities_round_up_to_kubernetes_steps() -> None:
    assert format_cpu(0.23) == "250m" and format_cpu(2.0) == "2" and format_cpu(0.001) == "50m"
    assert format_memory(700e6) == "704Mi" and format_memory(2 * 1024 * MiB) == "2Gi"
    assert cpu_cores("500m") == 0.5 and memory_bytes("1Gi") == 1024 * MiB


def test_duckdb_gets_a_thread_per_4_gib_of_the_limit_at_most_one_per_cpu() -> None:
    def threads(memory_mib: int | None, cpus: float) -> int | None:
        limits = ContainerLimits(2, cpus, memory_mib * MiB if memory_mib else None, 0, 0.0)
        return duckdb_threads(limits, cpus)

    assert threads(None, 8.0) is None  # no memory limit: DuckDB's own default
    assert threads(512, 2.0) == threads(4096, 2.0) == threads(8191, 4.0) == 1
    assert threads(8192, 2.0) == threads(65536, 2.0) == 2
    assert threads(65536, 16.0) == 16 and threads(65536, 0.5) == 1


def test_adaptive_settings_shrink_with_memory() -> None:
    small = adaptive_settings(ContainerLimits(2, 1.0, 512 * MiB, 0, 0.0), 1.0)
    large = adaptive_settings(ContainerLimits(2, 4.0, 16 * 1024 * MiB, 0, 0.0), 4.0)
    assert int(small["load.workers"]) <= 2 < int(large["load.workers"])
    assert int(small["data_writer.file_max_items"]) <= int(large["data_writer.file_max_items"])
    assert adaptive_settings(ContainerLimits(None, None, None, 0, 0.0), 2.0) == {}


def test_recommendation_covers_every_observed_peak() -> None:
    records = [record(p) for p in (300, 320, 310, 900, 305, 330, 315, 298, 340, 325)]
    rec = recommend("d", records, {"memory_limit": "512Mi", "cpu_request": "2"})
    assert covers(rec, records)
    assert memory_bytes(rec.recommended["memory_limit"]) >= 900 * MiB * 1.15
    assert memory_bytes(rec.recommended["memory_request"]) < memory_bytes(
        rec.recommended["memory_limit"]
    )
    assert rec.changes()["memory_limit"] == rec.recommended["memory_limit"]
    assert "10 run records" in rec.evidence[0]


def test_killed_attempt_pushes_the_limit_above_the_old_one() -> None:
    records = [record(200), record(480, outcome="killed", memory_limit=512 * MiB)]
    rec = recommend("d", records, {})
    assert memory_bytes(rec.recommended["memory_limit"]) >= 768 * MiB


def test_no_records_is_a_clear_error() -> None:
    with pytest.raises(TuneError, match="no run records for 'd' yet"):
        recommend("d", [], {})


def test_record_warnings() -> None:
    near = record(450, memory_limit=512 * MiB)
    assert any("88% of the 512 MiB limit" in w for w in near.warnings())
    idle = record(100, cpu_s=1, wall=100, memory_request=2048 * MiB, cpu_request=2.0)
    assert len(idle.warnings()) == 2
    assert record(100, cpu_throttled_seconds=10.0).warnings() == ["CPU throttled for 10.0 s"]


def test_normalize_workers_follow_the_cpu_limit_within_memory() -> None:
    def workers(cpu: float | None, memory_mib: int | None) -> str | None:
        limits = ContainerLimits(2, cpu, memory_mib * MiB if memory_mib else None, 0, 0.0)
        settings = adaptive_settings(limits, cpu or 8.0)
        if settings.get("normalize.workers", "1") != "1":
            assert settings["normalize.start_method"] == "fork"
        return settings.get("normalize.workers")

    assert workers(2.0, 4096) == "2" and workers(4.0, 1024) == "2"
    assert workers(1.0, 4096) == "1" and workers(1.5, 4096) == "1"
    assert workers(2.0, 512) == "1"
    assert workers(3.0, None) == "3"  # CPU limit alone: normalize settings only
    assert set(adaptive_settings(ContainerLimits(2, 3.0, None, 0, 0.0), 3.0)) == {
        "normalize.workers",
        "normalize.start_method",
    }


def test_streamed_loader_formats_get_larger_files() -> None:
    limits = ContainerLimits(2, 2.0, 4096 * MiB, 0, 0.0)
    worst = adaptive_settings(limits, 2.0)
    assert adaptive_settings(limits, 2.0, "insert_values") == worst
    assert int(worst["data_writer.file_max_items"]) <= 5_000
    parquet = adaptive_settings(limits, 2.0, "parquet")
    assert int(parquet["data_writer.file_max_items"]) < 131_000  # extract: normalize shares files
    assert parquet["normalize.data_writer.file_max_items"] == "131000"  # 8 load workers


@pytest.mark.parametrize("cpus", [2.0, 4.0])
@pytest.mark.parametrize("rows", [1_000_000, 10_000_000])
def test_normalize_workers_get_even_shares_of_the_extracted_files(cpus: float, rows: int) -> None:
    """dlt hands each worker a run of whole files, the pipeline-state file included: the
    slowest worker, which the step waits for, gets little more than an even share."""
    settings = adaptive_settings(ContainerLimits(2, cpus, 4096 * MiB, 0, 0.0), cpus, "parquet")
    per_file, workers = (
        int(settings["data_writer.file_max_items"]),
        int(settings["normalize.workers"]),
    )
    files = ["_dlt_pipeline_state.1.0.typed-jsonl"]
    files += [f"events.{n:06d}.0.typed-jsonl" for n in range(-(-rows // per_file))]
    shares = [
        sum(f.startswith("events") for f in group) for group in group_worker_files(files, workers)
    ]
    assert len(shares) == workers
    assert max(shares) / (len(files) - 1) <= 1.12 / workers, shares


def test_one_load_worker_gets_larger_load_files() -> None:
    """DuckDB loads one job at a time: its load files take the whole job budget, while the
    extracted files stay small enough for normalize's workers to share."""
    for memory_mib, job_rows in ((4096, "1000000"), (1024, "262000"), (512, "131000")):
        limits = ContainerLimits(2, 2.0, memory_mib * MiB, 0, 0.0)
        one = adaptive_settings(limits, 2.0, "parquet", destination_load_workers=1)
        assert one["normalize.data_writer.file_max_items"] == job_rows
        assert int(one["data_writer.file_max_items"]) < int(job_rows)
    insert = adaptive_settings(limits, 2.0, "insert_values", destination_load_workers=1)
    assert int(insert["normalize.data_writer.file_max_items"]) <= 5_000
