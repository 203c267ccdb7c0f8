"""Names and paths never reach outside a pipeline's state: a bad pipeline name is refused where
it enters (exit 2, one line naming the value and the rule, nothing read, written or deleted),
and a manifest's fields that become paths are checked before anything is read (exit 4)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import s3fs

from flows.errors import EXIT_CONFIG, EXIT_CORRUPT
from flows.parts.plan import part_name, plan_dates
from flows.state import CorruptSnapshotError, StateSession, open_store
from flows.state.errors import InvalidNameError
from flows.state.names import validate_pipeline_name
from tests.integration.helpers import bucket_listing, run_cli

BAD_NAMES = ["", "..", ".", "../x", "a/b", "/abs"]
SOURCE = """import dlt


@dlt.source
def things():
    return dlt.resource([{"id": 1}, {"id": 2}], name="things")
"""


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal trees mean nothing was touched."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def seed(s3: s3fs.S3FileSystem, bucket: str) -> None:
    """Two pipelines' state objects, and an object beside the state prefix."""
    for key in (
        "state/synthetic/manifests/000000000001.json",
        "state/synthetic/blobs/" + "a" * 64,
        "state/products/lease.json",
        "other/keep.txt",
    ):
        s3.pipe_file(f"{bucket}/{key}", b"x")


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", ["drop", "unlock", "show"])
def test_state_commands_refuse_a_bad_name_on_s3_and_delete_nothing(
    command: str, name: str, flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem
) -> None:
    """`flows state drop "$P" --yes` with P unset used to delete every pipeline's state."""
    seed(s3, bucket)
    before = bucket_listing(s3, bucket)
    extra = ["--yes"] if command != "show" else []
    result = run_cli(["state", command, name, "--state-url", f"s3://{bucket}/state", *extra], {})
    assert result.code == EXIT_CONFIG, result.stderr[-2000:]
    line = error_line(result.stderr)
    assert f"{name!r} refused" in line and "pipeline name is one folder name" in line, line
    assert bucket_listing(s3, bucket) == before


@pytest.mark.parametrize("name", ["..", "", "../warehouse"])
def test_state_drop_on_the_default_local_store_leaves_flows_home_alone(
    name: str, flows_env: dict[str, str], tmp_path: Path
) -> None:
    """`flows state drop ..` on the default `file://$FLOWS_HOME/state` deleted `$FLOWS_HOME`,
    the DuckDB warehouse with it."""
    home = Path(flows_env["FLOWS_HOME"])
    (home / "warehouse").mkdir(parents=True)
    (home / "warehouse" / "flows_synthetic.duckdb").write_bytes(b"warehouse")
    (home / "state" / "synthetic" / "manifests").mkdir(parents=True)
    (home / "state" / "synthetic" / "manifests" / "000000000001.json").write_bytes(b"{}")
    before = tree(home)
    env = {k: v for k, v in flows_env.items() if k != "STATE__URL"}
    result = run_cli(["state", "drop", name, "--yes"], env)
    assert result.code == EXIT_CONFIG, result.stderr[-2000:]
    assert f"{name!r} refused" in error_line(result.stderr)
    assert tree(home) == before


def test_ad_hoc_run_with_an_escaping_name_takes_no_lease(
    flows_env: dict[str, str], tmp_path: Path
) -> None:
    """`flows run mod:fn --name ../../escape` took a lease outside the store before dlt refused
    the name (exit 1); now it is refused first (exit 2) and nothing is written anywhere."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_things.py").write_text(SOURCE)
    store = tmp_path / "home" / "state"
    args = ["run", "my_things:things", "--name", "../../escape"]
    args += ["--state-url", f"file://{store}", "--pipelines-dir", str(tmp_path / "pods")]
    before = tree(tmp_path)
    result = run_cli(args, {"PYTHONPATH": str(project)})
    assert result.code == EXIT_CONFIG, result.stderr[-2000:]
    line = error_line(result.stderr)
    assert "--name '../../escape' refused" in line, line
    assert tree(tmp_path) == before
    assert not (tmp_path / "escape").exists() and not store.exists()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_session_refuses_a_bad_name_before_the_lease(
    name: str, flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    """The in-process entry (`StateSession`, which the runner opens for a user's pipeline)."""
    seed(s3, bucket)
    before = bucket_listing(s3, bucket)
    with pytest.raises(InvalidNameError) as refused:
        StateSession(open_store(f"s3://{bucket}/state"), name, tmp_path / "pods").open()
    assert refused.value.exit_code == EXIT_CONFIG
    assert bucket_listing(s3, bucket) == before
    assert not (tmp_path / "pods").exists()


def test_store_paths_refuse_components_that_leave_the_prefix(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/state")
    assert store.path("p", "blobs", "a" * 64) == f"{tmp_path}/state/p/blobs/{'a' * 64}"
    for bad in ("..", "", "a/../..", "/etc", "blobs/./x", "a//b"):
        with pytest.raises(InvalidNameError):
            store.path("p", bad)


def test_the_platforms_own_part_names_stay_valid() -> None:
    from datetime import date

    for part in plan_dates(date(2024, 1, 1), date(2024, 1, 20), 7):
        name = part_name("daily_events", part.key)
        assert name.startswith("daily_events--2024")
        assert validate_pipeline_name(name) == name


def _file_store_with_manifest(root: Path, files: list[dict[str, object]]) -> str:
    manifests = root / "state" / "synthetic" / "manifests"
    manifests.mkdir(parents=True)
    manifest = {
        "format": "flows.state/1",
        "pipeline_name": "synthetic",
        "generation": 1,
        "step": "extract",
        "owner": "someone",
        "files": files,
        "dirs": [],
    }
    (manifests / "000000000001.json").write_text(json.dumps(manifest))
    return f"file://{root / 'state'}"


def test_a_sha256_that_is_a_path_is_refused_before_anything_is_read(
    flows_env: dict[str, str], tmp_path: Path
) -> None:
    """A 64-character sha256 that is a path made the restore read a file outside the store
    and print its size and hash prefix."""
    secret = tmp_path / "secret1.bin"
    secret.write_bytes(os.urandom(1000))
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    # from <store>/synthetic/blobs/ up to tmp_path, padded with `./` to 64 characters
    sha = "./" * 22 + "../../../secret1.bin"
    assert len(sha) == 64
    url = _file_store_with_manifest(tmp_path, [{"path": "state.json", "size": 1000, "sha256": sha}])
    result = run_cli(
        ["run", "synthetic", "--state-url", url, "--pipelines-dir", str(tmp_path / "pods")], {}
    )
    assert result.code == EXIT_CORRUPT, result.stderr[-2000:]
    line = error_line(result.stderr)
    assert "64 lowercase hex characters expected" in line, line
    assert digest[:12] not in result.stderr and "1000 and" not in result.stderr
    assert not (tmp_path / "pods" / "synthetic").exists()


@pytest.mark.parametrize("path", [".", "", "state.json/", "../state.json", "/etc/passwd"])
def test_a_manifest_path_that_is_not_a_plain_relative_name_is_refused(
    path: str, flows_env: dict[str, str], tmp_path: Path
) -> None:
    url = _file_store_with_manifest(tmp_path, [{"path": path, "size": 1, "sha256": "a" * 64}])
    with pytest.raises(CorruptSnapshotError, match="unsafe path"):
        StateSession(open_store(url), "synthetic", tmp_path / "pods").open()
    assert not (tmp_path / "pods" / "synthetic").exists()
