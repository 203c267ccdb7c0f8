"""A PostgreSQL `products` table read incrementally on `updated_at` and merged on `id`."""

from __future__ import annotations

import dlt
from dlt.sources import DltResource
from dlt.sources.credentials import ConnectionStringCredentials
from dlt.sources.sql_database import sql_table

from flows.sources.sql import sql_backend_options


@dlt.source(name="products")
def products(
    credentials: ConnectionStringCredentials = dlt.secrets.value,
    table: str = "products",
    schema: str | None = None,
    chunk_size: int = 50_000,
    backend: str | None = None,
) -> DltResource:
    """Credentials from SOURCES__PRODUCTS__CREDENTIALS (a postgresql:// URL).

    Rows come as arrow tables (connectorx, see sql.py); SOURCES__PRODUCTS__BACKEND picks
    another dlt backend (`sqlalchemy`, `pyarrow`). A full refresh is not a different source:
    the pipeline extracts with `refresh="drop_resources"`, which drops the table and resets
    the cursor.
    """
    return sql_table(
        credentials=credentials,
        table=table,
        schema=schema,
        chunk_size=chunk_size,
        incremental=dlt.sources.incremental("updated_at"),
        primary_key="id",
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        **sql_backend_options(credentials, chunk_size, backend),
    )
