"""The arrow backends of `products` load the same types and values as dlt's sqlalchemy backend,
first run and incremental merge alike, on a real PostgreSQL table."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from devstack.postgres import Postgres
from flows.durable.run import run_pipeline
from tests.integration.helpers import duck

COLUMNS = "id, name, price, weight, active, born, updated_at, seen_at"
CHECKSUM = f"SELECT COUNT(*), COUNT(DISTINCT id), md5(string_agg(concat_ws('|', {COLUMNS}), ',' ORDER BY id)) FROM shop.products"  # noqa: E501


@pytest.fixture
def typed_db(postgres: Postgres, tmp_path: Path) -> str:
    name = f"typed_{tmp_path.name[-8:].lower().replace('-', '_')}"
    postgres.create_database(name)
    dsn = postgres.dsn(name)
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute(
            "CREATE TABLE products (id bigint PRIMARY KEY, name text, price numeric(12,2), "
            "weight double precision, active boolean, born date, "
            "updated_at timestamptz NOT NULL, seen_at timestamp)"
        )
        cur.execute(
            "INSERT INTO products SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'p' || i END, "
            "i * 1.25, i / 3.0, i % 2 = 0, DATE '2020-01-01' + i, "
            "TIMESTAMPTZ '2024-01-01 00:00:00+02' + i * interval '1 second 1 millisecond', "
            "CASE WHEN i % 5 = 0 THEN NULL ELSE TIMESTAMP '2024-06-01' + i * interval '1 minute' "
            "END FROM generate_series(1, 30000) i"
        )
    return dsn


def _load(backend: str, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    warehouse = tmp_path / f"{backend}.duckdb"
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", dsn)
    monkeypatch.setenv("SOURCES__PRODUCTS__BACKEND", backend)
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(warehouse))
    run_pipeline(
        "products", state_url=f"file://{tmp_path / backend}", pipelines_dir=tmp_path / "w" / backend
    )
    return warehouse


def _facts(warehouse: Path) -> tuple[list[tuple[str, str]], list[tuple[int, int, str]]]:
    with duck(warehouse) as con:
        types = con.sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'shop' AND table_name = 'products' "
            "AND column_name NOT LIKE '_dlt%' ORDER BY column_name"
        ).fetchall()
        return types, con.sql(CHECKSUM).fetchall()


@pytest.mark.parametrize("arrow_backend", ["connectorx", "pyarrow"])
def test_arrow_backend_matches_sqlalchemy_incl_incremental_merge(
    arrow_backend: str,
    typed_db: str,
    flows_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for backend in ("sqlalchemy", arrow_backend):
        _load(backend, typed_db, tmp_path, monkeypatch)
    reference = _facts(tmp_path / "sqlalchemy.duckdb")
    assert reference[1][0][:2] == (30000, 30000)
    assert dict(reference[0])["price"] == "DECIMAL(12,2)"
    assert _facts(tmp_path / f"{arrow_backend}.duckdb") == reference

    with psycopg2.connect(typed_db) as con, con.cursor() as cur:
        cur.execute(
            "UPDATE products SET price = price + 1000, name = NULL, "
            "updated_at = TIMESTAMPTZ '2025-01-01' + id * interval '1 millisecond' "
            "WHERE id % 1000 = 0"
        )
        cur.execute(
            "INSERT INTO products SELECT i, 'new' || i, i, i, true, DATE '2030-01-01', "
            "TIMESTAMPTZ '2025-02-01', NULL FROM generate_series(30001, 30500) i"
        )
    for backend in ("sqlalchemy", arrow_backend):
        _load(backend, typed_db, tmp_path, monkeypatch)
    reference = _facts(tmp_path / "sqlalchemy.duckdb")
    assert reference[1][0][:2] == (30500, 30500)
    assert _facts(tmp_path / f"{arrow_backend}.duckdb") == reference
    with duck(tmp_path / f"{arrow_backend}.duckdb") as con:
        assert con.sql("SELECT price FROM shop.products WHERE id = 2000").fetchall() == [(3500,)]
