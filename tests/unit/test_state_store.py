"""State store on a local `file://` store: snapshots, incremental uploads, verification, GC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.state import CorruptSnapshotError, StateSession, open_store
from flows.state.backends import MAX_UPLOAD_BATCH, UPLOAD_BUFFER_BYTES, upload_batch_size
from flows.state.snapshot import MANAGED_PATHS, PipelineLayout


def make_working_dir(root: Path) -> Path:
    wd = root / "pipe"
    (wd / "schemas").mkdir(parents=True)
    (wd / "state.json").write_text('{"v": 1}')
    (wd / "schemas" / "s.schema.json").write_text("{}")
    pkg = wd / "load" / "normalized" / "123.4"
    for folder in ("new_jobs", "started_jobs", "completed_jobs"):
        (pkg / folder).mkdir(parents=True)
    (pkg / "new_jobs" / "events.abc.0.parquet").write_bytes(b"x" * 5000)
    (wd / "trace.pickle").write_bytes(b"not managed")
    (wd / "load" / "new").mkdir(parents=True)
    (wd / "load" / "new" / "partial").write_bytes(b"temporary")
    return wd


def session(store_url: str, pipelines_dir: Path, **kw: object) -> StateSession:
    return StateSession(open_store(store_url), "pipe", pipelines_dir, lease_settle=0, **kw)  # type: ignore[arg-type]


def test_snapshot_restore_roundtrip_skips_temporary_files(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    make_working_dir(tmp_path / "a")
    with session(url, tmp_path / "a") as s:
        manifest = s.snapshot("normalize")
    assert manifest is not None and manifest.generation == 1
    paths = {f.path for f in manifest.files}
    assert "load/normalized/123.4/new_jobs/events.abc.0.parquet" in paths
    assert "trace.pickle" not in paths and not any(p.startswith("load/new") for p in paths)
    assert "load/normalized/123.4/started_jobs" in manifest.dirs

    with session(url, tmp_path / "b") as restored:
        assert restored.restored is not None and restored.restored.generation == 1
    wd = tmp_path / "b" / "pipe"
    assert (wd / "state.json").read_text() == '{"v": 1}'
    assert (wd / "load/normalized/123.4/started_jobs").is_dir()
    assert (wd / "load/normalized/123.4/new_jobs/events.abc.0.parquet").stat().st_size == 5000
    assert manifest.load_ids("load/normalized") == ["123.4"]


def test_uploads_are_incremental_and_moves_are_free(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    wd = make_working_dir(tmp_path / "a")
    with session(url, tmp_path / "a") as s:
        s.snapshot("normalize")
        first = s.stats.bytes_uploaded
        pkg = wd / "load/normalized/123.4"
        (pkg / "new_jobs/events.abc.0.parquet").rename(pkg / "completed_jobs/events.abc.0.parquet")
        s.snapshot("load-jobs")
        assert s.stats.bytes_uploaded == first  # a moved job file is not sent again
        assert s.snapshot("load") is None  # nothing changed: no new generation
        assert s.stats.skipped == 1
        (wd / "state.json").write_text('{"v": 2}')
        s.snapshot("extract")
        assert s.stats.bytes_uploaded == first + len('{"v": 2}')
        assert s.generation == 3


def test_restore_refuses_corrupt_blob_and_leaves_everything(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    make_working_dir(tmp_path / "a")
    with session(url, tmp_path / "a") as s:
        manifest = s.snapshot("normalize")
    assert manifest is not None
    layout = PipelineLayout(open_store(url), "pipe")
    big = next(f for f in manifest.files if f.size == 5000)
    blob = Path(layout.blob_path(big.sha256))
    blob.write_bytes(b"x" * 4000)  # truncated
    before = sorted(
        (p.relative_to(tmp_path / "store"), p.read_bytes())
        for p in (tmp_path / "store").rglob("*")
        if p.is_file()
    )
    local = tmp_path / "c" / "pipe"
    local.mkdir(parents=True)
    (local / "state.json").write_text("local")
    with pytest.raises(CorruptSnapshotError, match=r"events\.abc\.0\.parquet has size 4000"):
        session(url, tmp_path / "c").open()
    after = sorted(
        (p.relative_to(tmp_path / "store"), p.read_bytes())
        for p in (tmp_path / "store").rglob("*")
        if p.is_file()
    )
    assert after == before  # the lease was released, nothing else written
    assert (local / "state.json").read_text() == "local"  # local dir untouched
    assert not list((tmp_path / "c").glob(".restore-*"))


def test_restore_refuses_foreign_manifest(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    make_working_dir(tmp_path / "a")
    with session(url, tmp_path / "a") as s:
        s.snapshot("normalize")
    path = Path(PipelineLayout(open_store(url), "pipe").manifest_path(1))
    raw = json.loads(path.read_text())
    raw["pipeline_name"] = "other"
    path.write_text(json.dumps(raw))
    with pytest.raises(CorruptSnapshotError, match="belongs to pipeline 'other'"):
        session(url, tmp_path / "d").open()


def test_garbage_collection_keeps_newest_generations(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    wd = make_working_dir(tmp_path / "a")
    with session(url, tmp_path / "a", keep_generations=2) as s:
        for i in range(4):
            (wd / "state.json").write_text(f'{{"v": {i + 10}}}')
            s.snapshot("extract")
    layout = PipelineLayout(open_store(url), "pipe")
    assert layout.generations() == [3, 4]
    referenced = {f.sha256 for g in (3, 4) for f in layout.read_manifest(g).files}
    assert layout.blob_names() == referenced


def test_managed_paths_cover_what_dlt_resumes_from() -> None:
    assert {"state.json", "schemas", "normalize/extracted", "load/normalized"} <= set(MANAGED_PATHS)


def test_upload_batches_hold_a_bounded_number_of_bytes() -> None:
    assert upload_batch_size([1000] * 500) == MAX_UPLOAD_BATCH
    assert upload_batch_size([2**20, 4 * 2**20]) == UPLOAD_BUFFER_BYTES // (4 * 2**20)
    assert upload_batch_size([10 * UPLOAD_BUFFER_BYTES]) == 1
    # a multipart file holds its parts in flight, not its size
    assert upload_batch_size([2**30, 2**20]) == 1
    assert upload_batch_size([]) == MAX_UPLOAD_BATCH
