"""The products (PostgreSQL) and files (S3) sources, and the PostgreSQL and S3 destinations."""

from __future__ import annotations

import io
import json
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from devstack.postgres import Postgres
from flows.durable.run import run_pipeline
from tests.integration.helpers import duck, exact, run_args, run_cli


@pytest.fixture
def shop_db(postgres: Postgres, tmp_path: Path) -> str:
    """A fresh source database with a products table."""
    name = f"shop_{tmp_path.name[-8:].lower().replace('-', '_')}"
    postgres.create_database(name)
    dsn = postgres.dsn(name)
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute(
            "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), "
            "updated_at timestamptz NOT NULL)"
        )
        cur.execute(
            "INSERT INTO products SELECT i, 'p' || i, i * 1.5, "
            "'2024-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, 500) i"
        )
    return dsn


def _set(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_products_incremental_merge_and_full_refresh(
    shop_db: str,
    flows_env: dict[str, str],
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse = tmp_path / "w.duckdb"
    _set(
        monkeypatch,
        {
            "SOURCES__PRODUCTS__CREDENTIALS": shop_db,
            "DESTINATION__DUCKDB__CREDENTIALS": str(warehouse),
        },
    )
    state = f"s3://{bucket}/state"
    first = run_pipeline("products", state_url=state, pipelines_dir=tmp_path / "a")
    assert first.normalized_rows["products"] == 500

    with psycopg2.connect(shop_db) as con, con.cursor() as cur:
        cur.execute("UPDATE products SET price = 999, updated_at = '2025-01-01' WHERE id = 7")
        cur.execute("INSERT INTO products VALUES (501, 'new', 1, '2025-01-02')")
    second = run_pipeline("products", state_url=state, pipelines_dir=tmp_path / "b")
    assert second.normalized_rows["products"] == 2  # only the changed and the new row
    with duck(warehouse) as con:
        assert con.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM shop.products").fetchall() == [
            (501, 501)
        ]
        assert con.sql("SELECT price FROM shop.products WHERE id = 7").fetchall()[0][0] == 999

    refresh = run_pipeline(
        "products", state_url=state, pipelines_dir=tmp_path / "c", full_refresh=True
    )
    assert refresh.normalized_rows["products"] == 501
    with duck(warehouse) as con:
        assert con.sql("SELECT COUNT(*) FROM shop.products").fetchall()[0][0] == 501


def test_products_bad_credentials_fail_with_one_line(
    flows_env: dict[str, str], postgres: Postgres, tmp_path: Path
) -> None:
    env = {
        **flows_env,
        "SOURCES__PRODUCTS__CREDENTIALS": postgres.dsn().replace(":flows@", ":wrong@"),
    }
    result = run_cli(["run", "products", "--pipelines-dir", str(tmp_path / "p")], env)
    assert result.code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "password authentication failed" in last


def test_files_from_s3_load_only_new_files(
    flows_env: dict[str, str],
    bucket: str,
    s3: s3fs.S3FileSystem,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse = tmp_path / "w.duckdb"
    _set(
        monkeypatch,
        {
            "SOURCES__FILES__BUCKET_URL": f"s3://{bucket}/landing",
            "SOURCES__FILES__CREDENTIALS__AWS_ACCESS_KEY_ID": flows_env["AWS_ACCESS_KEY_ID"],
            "SOURCES__FILES__CREDENTIALS__AWS_SECRET_ACCESS_KEY": flows_env[
                "AWS_SECRET_ACCESS_KEY"
            ],
            "SOURCES__FILES__CREDENTIALS__ENDPOINT_URL": flows_env["AWS_ENDPOINT_URL"],
            "DESTINATION__DUCKDB__CREDENTIALS": str(warehouse),
        },
    )

    def upload(batch: int, rows: int) -> None:
        records = [{"id": batch * 1000 + i, "v": f"r{i}"} for i in range(rows)]
        csv = "id,v\n" + "".join(f"{r['id']},{r['v']}\n" for r in records)
        s3.pipe_file(f"{bucket}/landing/b{batch}.csv", csv.encode())
        s3.pipe_file(
            f"{bucket}/landing/sub/b{batch}.jsonl",
            "".join(json.dumps(r) + "\n" for r in records).encode(),
        )
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(records), buf)
        s3.pipe_file(f"{bucket}/landing/b{batch}.parquet", buf.getvalue())

    upload(1, 30)
    state = f"s3://{bucket}/state"
    first = run_pipeline("files", state_url=state, pipelines_dir=tmp_path / "a")
    assert {k: v for k, v in first.normalized_rows.items() if not k.startswith("_dlt")} == {
        "files_csv": 30,
        "files_jsonl": 30,
        "files_parquet": 30,
    }
    upload(2, 5)
    second = run_pipeline("files", state_url=state, pipelines_dir=tmp_path / "b")
    assert {k: v for k, v in second.normalized_rows.items() if not k.startswith("_dlt")} == {
        "files_csv": 5,
        "files_jsonl": 5,
        "files_parquet": 5,
    }
    with duck(warehouse) as con:
        for table in ("files_csv", "files_jsonl", "files_parquet"):
            assert con.sql(f"SELECT COUNT(DISTINCT id) FROM landing.{table}").fetchall()[0][0] == 35


def test_synthetic_into_postgres_resumes_exactly_after_kill_in_load(
    flows_env: dict[str, str], postgres: Postgres, bucket: str, tmp_path: Path
) -> None:
    rows = 20_000
    db = f"wh_{tmp_path.name[-8:].lower().replace('-', '_')}"
    postgres.create_database(db)
    env = {
        **flows_env,
        "SOURCES__SYNTHETIC__ROWS": str(rows),
        "PIPELINES__DESTINATION": "postgres",
        "DESTINATION__POSTGRES__CREDENTIALS": postgres.dsn(db),
        "DATA_WRITER__FILE_MAX_ITEMS": "5000",
        "STATE__LOAD_SNAPSHOT_INTERVAL": "0",
    }
    state = f"s3://{bucket}/state"
    killed = run_cli(
        run_args(state, tmp_path / "pod1"),
        env,
        kill_at="load-last",
    )
    assert killed.code == -9, killed.stderr[-2000:]
    rerun = run_cli(
        run_args(state, tmp_path / "pod2", "--json"),
        env,
    )
    assert rerun.code == 0, rerun.stderr[-2000:]
    assert rerun.json()["extracted_rows"].get("events", 0) == 0
    with psycopg2.connect(postgres.dsn(db)) as con, con.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id), MAX(id) FROM synthetic.events")
        events, distinct, max_id = cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM synthetic.events__tags")
        (tags,) = cur.fetchone()
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT load_id) FROM synthetic._dlt_loads")
        loads, distinct_loads = cur.fetchone()
    assert {
        "events": events,
        "distinct_ids": distinct,
        "max_id": max_id,
        "tags": tags,
        "orphan_tags": 0,
    } == exact(rows)
    assert loads == distinct_loads == 1


def test_synthetic_to_filesystem_destination_on_s3(
    flows_env: dict[str, str], bucket: str, s3: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    env = {
        **flows_env,
        "SOURCES__SYNTHETIC__ROWS": "5000",
        "PIPELINES__DESTINATION": "filesystem",
        "DESTINATION__FILESYSTEM__BUCKET_URL": f"s3://{bucket}/lake",
        "DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID": flows_env["AWS_ACCESS_KEY_ID"],
        "DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY": flows_env[
            "AWS_SECRET_ACCESS_KEY"
        ],
        "DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL": flows_env["AWS_ENDPOINT_URL"],
    }
    result = run_cli(
        run_args(f"s3://{bucket}/state", tmp_path / "p"),
        env,
    )
    assert result.code == 0, result.stderr[-2000:]
    files = s3.find(f"{bucket}/lake/synthetic/events")
    table = pa.concat_tables(pq.read_table(io.BytesIO(s3.cat_file(f))) for f in files)
    assert table.num_rows == 5000 and len(set(table.column("id").to_pylist())) == 5000
