"""Bad input gets one line, the documented exit code, no traceback, and writes nothing:
the bucket listing (keys, sizes, ETags) is identical before and after, no bucket appears."""

from __future__ import annotations

from pathlib import Path

import pytest
import s3fs

from tests.integration.helpers import bucket_listing, run_args, run_cli

ROWS = 2_000


def buckets(s3: s3fs.S3FileSystem) -> set[str]:
    s3.invalidate_cache()
    return {b.rstrip("/") for b in s3.ls("")}


@pytest.fixture
def env(flows_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **flows_env,
        "SOURCES__SYNTHETIC__ROWS": str(ROWS),
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        "STATE__LEASE_TTL": "10",
    }


@pytest.fixture
def state(env: dict[str, str], bucket: str, tmp_path: Path) -> str:
    """A bucket holding the state of one good run."""
    url = f"s3://{bucket}/state"
    first = run_cli(run_args(url, tmp_path / "pod0"), env)
    assert first.code == 0, first.stderr[-2000:]
    return url


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://no-such-bucket-{n}/state", "bucket 'no-such-bucket-{n}' does not exist"),
        ("memory://scratch/state", "keeps nothing beyond this process"),
        ("ftp://files.example/state", "scheme ftp:// is not supported"),
    ],
)
def test_bad_state_url_is_refused_and_nothing_is_created(
    url: str, says: str, env: dict[str, str], s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    n = tmp_path.name[-8:].lower().replace("_", "-")
    url, says = url.format(n=n), says.format(n=n)
    before = buckets(s3)
    result = run_cli(run_args(url, tmp_path / "pod"), env)
    assert result.code == 2, result.stderr[-2000:]
    line = one_line(result.stderr)
    assert says in line and "--state-url" in line, line
    assert buckets(s3) == before
    assert not (tmp_path / "pod").exists() or not any((tmp_path / "pod").rglob("state.json"))


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SOURCES__SYNTHETIC__ROWS", "abc", "SOURCES__SYNTHETIC__ROWS = 'abc' is not a valid int"),
        ("STATE__LEASE_TTL", "soon", "STATE__LEASE_TTL"),
        ("STATE__RETRY_WINDOW", "-1", "STATE__RETRY_WINDOW"),
        ("AWS_CA_BUNDLE", "/nonexistent/ca.pem", "AWS_CA_BUNDLE = '/nonexistent/ca.pem'"),
    ],
)
def test_bad_setting_names_the_setting_and_changes_nothing(
    variable: str,
    value: str,
    says: str,
    env: dict[str, str],
    state: str,
    bucket: str,
    s3: s3fs.S3FileSystem,
    tmp_path: Path,
) -> None:
    before = bucket_listing(s3, bucket)
    result = run_cli(run_args(state, tmp_path / "pod"), {**env, variable: value})
    assert result.code == 2, result.stderr[-2000:]
    assert says in one_line(result.stderr)
    assert bucket_listing(s3, bucket) == before


def test_corrupt_lease_is_shown_refused_and_repaired_with_the_cli(
    env: dict[str, str], state: str, bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    s3.pipe_file(f"{bucket}/state/synthetic/lease.json", b"\x00garbage{")
    before = bucket_listing(s3, bucket)
    refused = run_cli(run_args(state, tmp_path / "pod"), env)
    assert refused.code == 3, refused.stderr[-2000:]
    assert "corrupt" in one_line(refused.stderr) and "unlock" in refused.stderr
    assert bucket_listing(s3, bucket) == before

    shown = run_cli(["state", "show", "synthetic", "--state-url", state], env)
    assert shown.code == 0, shown.stderr
    assert "lease: corrupt" in shown.stdout

    unlocked = run_cli(["state", "unlock", "synthetic", "--state-url", state, "--yes"], env)
    assert unlocked.code == 0, unlocked.stderr
    assert "revoked" in unlocked.stdout
    shown = run_cli(["state", "show", "synthetic", "--state-url", state], env)
    assert "lease: revoked by flows state unlock" in shown.stdout, shown.stdout
    # the replacement lease expires after one TTL; the next run waits for it and proceeds
    again = run_cli(run_args(state, tmp_path / "pod2", "--json"), env)
    assert again.code == 0, again.stderr[-2000:]


def test_drop_works_on_a_corrupt_lease(
    env: dict[str, str], state: str, bucket: str, s3: s3fs.S3FileSystem
) -> None:
    s3.pipe_file(f"{bucket}/state/synthetic/lease.json", b"not json")
    dropped = run_cli(["state", "drop", "synthetic", "--state-url", state, "--yes"], env)
    assert dropped.code == 0, dropped.stderr
    assert bucket_listing(s3, bucket) == {}


def test_state_commands_default_to_state_url(
    env: dict[str, str], state: str, tmp_path: Path
) -> None:
    shown = run_cli(["state", "show", "synthetic"], {**env, "STATE__URL": state})
    assert shown.code == 0, shown.stderr
    assert "generation" in shown.stdout and state in shown.stdout


def test_state_show_of_an_unknown_pipeline_exits_2(
    env: dict[str, str], state: str, bucket: str, s3: s3fs.S3FileSystem
) -> None:
    before = bucket_listing(s3, bucket)
    shown = run_cli(["state", "show", "synthtic", "--state-url", state], env)
    assert shown.code == 2, shown.stderr
    line = one_line(shown.stderr)
    assert "'synthtic' is not declared and has no state" in line and "synthetic" in line
    assert shown.stdout == "" and bucket_listing(s3, bucket) == before
    declared = run_cli(["state", "show", "files", "--state-url", state], env)
    assert declared.code == 0 and "no snapshots" in declared.stdout  # declared, not yet run
