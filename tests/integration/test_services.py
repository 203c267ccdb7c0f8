"""The service launchers against the real servers: data survives restarts, auth is enforced."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg2
import pytest
import s3fs

from devstack.ports import free_port
from devstack.postgres import Postgres
from devstack.seaweedfs import SeaweedFS


def _s3(server: SeaweedFS) -> s3fs.S3FileSystem:
    """A client of its own: s3fs caches instances, and a cached one outlives a restart."""
    return s3fs.S3FileSystem(
        **server.storage_options(), skip_instance_cache=True, use_listings_cache=False
    )


def test_free_port_leaves_room_for_the_grpc_port() -> None:
    port = free_port()
    assert port > 0 and port + 10000 <= 65535


def test_seaweedfs_keeps_objects_across_a_restart(tmp_path: Path) -> None:
    with SeaweedFS(tmp_path / "s3") as server:
        server.create_bucket("flows-data")
        server.create_bucket("flows-data")  # again: already ours, no error
        _s3(server).pipe("flows-data/state/snapshot.bin", b"\x00payload\xff" * 1000)
        assert _s3(server).cat("flows-data/state/snapshot.bin") == b"\x00payload\xff" * 1000
        endpoint = server.endpoint_url
        with pytest.raises(RuntimeError, match="already runs"):
            SeaweedFS(tmp_path / "s3").start()

    # a new launcher on the same dir, as the dev stack does from another process
    with SeaweedFS(tmp_path / "s3") as again:
        assert again.endpoint_url == endpoint
        assert _s3(again).cat("flows-data/state/snapshot.bin") == b"\x00payload\xff" * 1000


def test_two_seaweedfs_servers_run_side_by_side(tmp_path: Path) -> None:
    with SeaweedFS(tmp_path / "a") as one, SeaweedFS(tmp_path / "b") as two:
        assert one.endpoint_url != two.endpoint_url
        one.create_bucket("only-in-one")
        two.create_bucket("only-in-two")
        _s3(one).pipe("only-in-one/k", b"1")
        _s3(two).pipe("only-in-two/k", b"2")
        assert _s3(one).ls("") == ["only-in-one"]
        assert _s3(two).ls("") == ["only-in-two"]
        assert _s3(two).cat("only-in-two/k") == b"2"


def test_seaweedfs_refuses_wrong_credentials(seaweed: SeaweedFS, bucket: str) -> None:
    wrong = {**seaweed.storage_options(), "secret": "wrong"}
    with pytest.raises(PermissionError):
        s3fs.S3FileSystem(**wrong, skip_instance_cache=True).ls(bucket)


def test_seaweedfs_env_names_the_server(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path / "s3", s3_port=free_port())
    assert server.env() == {
        "AWS_ACCESS_KEY_ID": "flows",
        "AWS_SECRET_ACCESS_KEY": "flows-secret",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.s3_port}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_postgres_keeps_rows_across_a_restart(tmp_path: Path) -> None:
    with Postgres(tmp_path / "pg") as server:
        with psycopg2.connect(server.dsn()) as con, con.cursor() as cur:
            cur.execute("CREATE TABLE runs (id int PRIMARY KEY, name text)")
            cur.execute("INSERT INTO runs VALUES (1, 'first'), (2, 'second')")
        con.close()
        dsn = server.dsn()
        with pytest.raises(RuntimeError, match="already runs"):
            Postgres(tmp_path / "pg").start()

    with Postgres(tmp_path / "pg") as again:
        assert again.dsn() == dsn
        with psycopg2.connect(again.dsn()) as con, con.cursor() as cur:
            cur.execute("SELECT id, name FROM runs ORDER BY id")
            assert cur.fetchall() == [(1, "first"), (2, "second")]
        con.close()


def test_postgres_creates_databases_and_refuses_wrong_passwords(tmp_path: Path) -> None:
    with Postgres(tmp_path / "pg") as server:
        server.create_database("shop")
        server.create_database("shop")  # again: exists, no error
        with psycopg2.connect(server.dsn("shop")) as con, con.cursor() as cur:
            cur.execute("SELECT current_database(), current_user")
            assert cur.fetchone() == ("shop", "flows")
        con.close()

        wrong = server.dsn().replace(":flows@", ":wrong@")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(wrong)


def test_postgres_listens_on_loopback_tcp_only(tmp_path: Path) -> None:
    with Postgres(tmp_path / "pg") as server:
        with psycopg2.connect(server.dsn()) as con, con.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone() == ("127.0.0.1",)
            cur.execute("SHOW unix_socket_directories")
            assert cur.fetchone() == (str(server.data_dir),)
        con.close()


def test_postgres_start_failure_shows_the_server_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = Postgres(tmp_path / "pg", port=busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="could not create any TCP/IP sockets"):
            server.start()
