"""A store write this run made is recognised as its own: a manifest the store committed whose
reply was lost is not "another writer took over", while a genuine other writer still is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs

from devstack.seaweedfs import SeaweedFS
from flows.errors import EXIT_LEASE
from flows.state import LeaseLostError, Manifest, StateSession, StoreUnreachableError, open_store
from tests.integration.faults import Fault, FaultProxy
from tests.integration.helpers import exact, run_cli, synthetic_counts

ROWS = 5_000


@pytest.fixture
def proxy(seaweed: SeaweedFS) -> Iterator[FaultProxy]:
    proxy = FaultProxy(seaweed.endpoint_url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.mark.parametrize("path", ["/manifests/", "/blobs/"])
def test_a_lost_reply_to_a_committed_write_is_not_another_writer(
    path: str, proxy: FaultProxy, flows_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """The store committed the first snapshot's PUT and the reply was lost: the store's retry
    of a create-only manifest write gets 412. The run reads the object back, finds its own
    bytes and goes on: exit 0, every row loaded once."""
    warehouse = tmp_path / "warehouse.duckdb"
    env = {
        "AWS_ENDPOINT_URL": proxy.url,
        "SOURCES__SYNTHETIC__ROWS": str(ROWS),
        "DESTINATION__DUCKDB__CREDENTIALS": str(warehouse),
    }
    fault = proxy.add(Fault("drop", method="PUT", path=path))
    url = f"s3://{bucket}/state"
    args = ["run", "synthetic", "--state-url", url, "--pipelines-dir", str(tmp_path / "pod")]
    result = run_cli(args, env)
    assert fault.applied == 1, proxy.requests[-20:]
    assert result.code == 0, result.stderr[-3000:]
    assert synthetic_counts(warehouse) == {**exact(ROWS), "loads": 1, "distinct_loads": 1}


def _session(url: str, tmp_path: Path, pod: str = "pod") -> StateSession:
    return StateSession(open_store(url), "synthetic", tmp_path / pod, lease_ttl=30)


def _write(session: StateSession, name: str, data: bytes) -> None:
    session.working_dir.mkdir(parents=True, exist_ok=True)
    (session.working_dir / "state.json").write_bytes(b"{}")
    (session.working_dir / "schemas").mkdir(exist_ok=True)
    (session.working_dir / "schemas" / name).write_bytes(data)


def test_a_snapshot_committed_while_the_run_saw_an_outage_is_adopted(
    proxy: FaultProxy,
    flows_env: dict[str, str],
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The manifest PUT committed, its reply was lost, and the store's retries met an outage
    until the retry window ran out: the snapshot failed. The next snapshot finds that
    generation carrying this run's lease token and continues from it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    session = _session(f"s3://{bucket}/state", tmp_path)
    session.open()
    try:
        _write(session, "a.json", b"one")
        proxy.add(Fault("drop", method="PUT", path="/manifests/"))
        proxy.add(Fault("503", method="PUT", path="/manifests/", times=None))
        with pytest.raises(StoreUnreachableError):
            session.snapshot("extract")
        assert session.generation == 0
        proxy.clear()
        _write(session, "b.json", b"two")
        manifest = session.snapshot("normalize")
        assert manifest is not None and manifest.generation == 2
        assert session.layout.generations() == [1, 2]
        assert session.layout.read_manifest(1).lease_token == session.lease.token
    finally:
        session.close(collect=False)


def test_a_genuine_other_writer_is_still_refused(
    flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    """A manifest with other bytes at the generation this run publishes, or a newer
    generation without this run's token: another writer, refused, nothing overwritten."""
    session = _session(f"s3://{bucket}/state", tmp_path)
    session.open()
    try:
        _write(session, "a.json", b"one")
        session.snapshot("extract")
        foreign = Manifest("synthetic", 2, "extract", "someone else", [], lease_token="other")
        key = f"{bucket}/state/synthetic/manifests/{2:012d}.json"
        s3.pipe_file(key, foreign.to_json())
        _write(session, "b.json", b"two")
        with pytest.raises(LeaseLostError) as lost:
            session.snapshot("normalize")
        assert lost.value.exit_code == EXIT_LEASE
        s3.invalidate_cache()
        assert s3.cat_file(key) == foreign.to_json()
        assert session.layout.generations() == [1, 2]
    finally:
        session.close(collect=False)


def test_a_create_only_write_that_finds_other_bytes_is_refused(
    flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    """Two writers racing for one generation: the one whose create finds the other's
    manifest refuses (the read-back compares bytes, not just that an object is there)."""
    from flows.state.snapshot import publish_snapshot

    session = _session(f"s3://{bucket}/state", tmp_path)
    session.open()
    try:
        theirs = Manifest("synthetic", 1, "extract", "someone else", [], lease_token="other")
        key = f"{bucket}/state/synthetic/manifests/{1:012d}.json"
        s3.pipe_file(key, theirs.to_json())
        mine = Manifest("synthetic", 1, "extract", "me", [], lease_token=session.lease.token)
        with pytest.raises(LeaseLostError, match="already has generation 1"):
            publish_snapshot(session.layout, mine, {}, set(), tmp_path / "staging")
        s3.invalidate_cache()
        assert s3.cat_file(key) == theirs.to_json()
    finally:
        session.close(collect=False)
